use eventsourcing::prelude::*;

#[aggregate]
#[derive(Debug, Default)]
struct Order {
    lines: Vec<(String, u32)>,
}

#[aggregate]
impl Order {
    #[event(Created)]
    fn create() -> Self {
        Self::default()
    }

    #[event(LineAdded, version = 2, upcasters(line_added_from_v1))]
    fn add_line(&mut self, sku: String, quantity: u32) {
        self.lines.push((sku, quantity));
    }
}

// Takes the state by value: an upcaster changes it in place.
fn line_added_from_v1(state: serde_json::Value) -> serde_json::Value {
    state
}

fn main() {}
