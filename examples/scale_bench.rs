//! Scale-out on PostgreSQL: orders per second against partitions (1, 2, 4,
//! 8), in one process (the multi-task runner) and with 1 and 2 worker
//! processes (`Runner::worker`), plus latency at a steady rate. Runs the
//! orders example for each, on a fresh database each time, prints a
//! Markdown table and draws the curves into an SVG file.
//!
//! The workload is many customers at once: 8 concurrent clients, each
//! creating one order per command. Commits to one log take turns on its
//! head row, each waiting for its flush to disk; partitions let them
//! overlap.
//!
//! ```text
//! cargo build --release --examples
//! cargo run --release --example scale_bench -- --url postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Options: `--url URL` a database on the server (`EVENTSOURCING_STORE_URL`;
//! each run makes and drops a database of its own beside it), `--orders N`
//! per run (5,000), `--clients N` (8), `--orders-per-commit N` (1), `--runs
//! N` per configuration (3), `--rate N` orders/s for the latency rows (500),
//! `--svg PATH` (`docs/scale.svg`).

use std::process::Command;

use sqlx::Connection;

struct Options {
    url: String,
    orders: u64,
    clients: u64,
    orders_per_commit: u64,
    runs: usize,
    rate: u64,
    svg: String,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        url: std::env::var("EVENTSOURCING_STORE_URL").unwrap_or_default(),
        orders: 5_000,
        clients: 8,
        orders_per_commit: 1,
        runs: 3,
        rate: 500,
        svg: "docs/scale.svg".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--url" => options.url = value()?,
            "--orders" => options.orders = number(value()?)?,
            "--clients" => options.clients = number(value()?)?.max(1),
            "--orders-per-commit" => options.orders_per_commit = number(value()?)?.max(1),
            "--runs" => options.runs = number(value()?)?.max(1) as usize,
            "--rate" => options.rate = number(value()?)?.max(1),
            "--svg" => options.svg = value()?,
            other => {
                return Err(format!(
                    "unknown option `{other}`; see the top of examples/scale_bench.rs"
                ));
            }
        }
    }
    if !options.url.starts_with("postgres") {
        return Err("give a PostgreSQL server: --url postgres://USER@HOST:PORT/DATABASE".to_owned());
    }
    Ok(options)
}

/// What one run of the orders program printed.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    orders_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// How busy the machine's cores were during the run (0 to 1), from
    /// `/proc/stat`: the database and the program share them.
    cpu_busy: f64,
}

const PARTITIONS: [u32; 4] = [1, 2, 4, 8];
/// 0: one process with the multi-task runner.
const WORKERS: [u32; 3] = [0, 1, 2];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let program = std::env::current_exe()?.with_file_name("orders");
    if !program.exists() {
        return Err(format!(
            "{} is missing: build the examples first (cargo build --release --examples)",
            program.display()
        )
        .into());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "{} orders per run from {} clients, {} per command, {} run(s) per configuration, {cores} cores",
        options.orders, options.clients, options.orders_per_commit, options.runs
    );

    let mut throughput: Vec<(u32, u32, Vec<f64>)> = Vec::new();
    // The median share of the cores busy, in the same order.
    let mut cpu: Vec<f64> = Vec::new();
    for workers in WORKERS {
        for partitions in PARTITIONS {
            let (mut rates, mut busy) = (Vec::new(), Vec::new());
            for _ in 0..options.runs {
                let run = run_orders(&program, &options, partitions, workers, None).await?;
                eprintln!(
                    "{partitions} partition(s), {}: {:.0} orders/s, cores {:.0}% busy",
                    label(workers),
                    run.orders_per_second,
                    100.0 * run.cpu_busy
                );
                rates.push(run.orders_per_second);
                busy.push(run.cpu_busy);
            }
            rates.sort_by(f64::total_cmp);
            busy.sort_by(f64::total_cmp);
            throughput.push((workers, partitions, rates));
            cpu.push(median(&busy));
        }
    }

    println!("| partitions | {} |", WORKERS.map(label).join(" | "));
    println!("|---:|{}", "---:|".repeat(WORKERS.len()));
    for partitions in PARTITIONS {
        let cells: Vec<String> = WORKERS
            .iter()
            .map(|&workers| {
                let at = throughput
                    .iter()
                    .position(|(w, p, _)| (*w, *p) == (workers, partitions))
                    .expect("measured");
                let rates = &throughput[at].2;
                format!(
                    "{:.0} ({:.0}–{:.0}), {:.0}% busy",
                    median(rates),
                    rates[0],
                    rates[rates.len() - 1],
                    100.0 * cpu[at]
                )
            })
            .collect();
        println!("| {partitions} | {} |", cells.join(" | "));
    }

    println!();
    println!("At a steady {} orders/s:", options.rate);
    println!("| partitions | runner | p50 | p99 |");
    println!("|---:|---|---:|---:|");
    for workers in [0, 1] {
        for partitions in [1, 4] {
            let run = run_orders(&program, &options, partitions, workers, Some(options.rate)).await?;
            println!(
                "| {partitions} | {} | {:.1} ms | {:.1} ms |",
                label(workers),
                run.p50_ms,
                run.p99_ms
            );
        }
    }

    draw(&options.svg, &throughput, cores)?;
    eprintln!("drew {}", options.svg);
    Ok(())
}

fn label(workers: u32) -> String {
    match workers {
        0 => "one process".to_owned(),
        1 => "1 worker process".to_owned(),
        w => format!("{w} worker processes"),
    }
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Runs the orders program once on a database of its own.
async fn run_orders(
    program: &std::path::Path,
    options: &Options,
    partitions: u32,
    workers: u32,
    rate: Option<u64>,
) -> Result<Run, Box<dyn std::error::Error>> {
    let database = format!("scale_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&options.url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await?;
    let base = options
        .url
        .rsplit_once('/')
        .map_or(options.url.as_str(), |(base, _)| base);
    let orders = match rate {
        Some(rate) => rate * 5,
        None => options.orders,
    };
    let mut command = Command::new(program);
    command
        .args(["--url", &format!("{base}/{database}")])
        .args(["--orders", &orders.to_string()])
        .args(["--partitions", &partitions.to_string()])
        .args(["--clients", &options.clients.to_string()])
        .args(["--orders-per-commit", &options.orders_per_commit.to_string()])
        .args(["--lease-ttl-ms", "3000"]);
    if workers > 0 {
        command.args(["--workers", &workers.to_string()]);
    }
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    let before = cpu_times();
    let output = command.output()?;
    let after = cpu_times();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the orders program failed: {}\n{text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut run = Run {
        cpu_busy: match (before, after) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                (busy1 - busy0) as f64 / (total1 - total0) as f64
            }
            _ => f64::NAN,
        },
        ..Run::default()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("throughput: ") {
            run.orders_per_second = rest.split(' ').next().unwrap_or_default().parse()?;
        }
        if let Some(rest) = line.strip_prefix("latency created -> paid: ") {
            let value = |name: &str| -> f64 {
                rest.split(", ")
                    .find_map(|part| part.strip_prefix(name))
                    .and_then(|v| v.trim_end_matches(" ms").parse().ok())
                    .unwrap_or(f64::NAN)
            };
            (run.p50_ms, run.p99_ms) = (value("p50 "), value("p99 "));
        }
    }
    Ok(run)
}

/// The machine's busy and total CPU time so far, in clock ticks, from
/// `/proc/stat` (Linux); `None` elsewhere.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

/// Draws orders/s against partitions, a line per way of running.
fn draw(path: &str, throughput: &[(u32, u32, Vec<f64>)], cores: usize) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let top = throughput
        .iter()
        .flat_map(|(_, _, rates)| rates.iter().copied())
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("orders/s on PostgreSQL against partitions ({cores} cores)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..8.5f64, 0f64..top * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("partitions")
        .y_desc("orders/s")
        .x_labels(8)
        .draw()?;
    let colours = [BLUE, RED, GREEN];
    for (workers, colour) in WORKERS.into_iter().zip(colours) {
        let points: Vec<(f64, f64)> = throughput
            .iter()
            .filter(|(w, _, _)| *w == workers)
            .map(|(_, p, rates)| (f64::from(*p), median(rates)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(label(workers))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&point| Circle::new(point, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
