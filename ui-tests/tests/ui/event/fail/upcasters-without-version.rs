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

    #[event(LineAdded, upcasters(line_added_from_v1))]
    fn add_line(&mut self, sku: String, quantity: u32) {
        self.lines.push((sku, quantity));
    }
}

fn line_added_from_v1(state: &mut serde_json::Value) {
    state["quantity"] = 1.into();
}

fn main() {}
