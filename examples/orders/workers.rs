//! `--workers W`: the worker OS processes of the orders example, started
//! as this program's `worker` subcommand, stopped by closing their standard
//! input, and what each one processed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::Options;

/// A worker process, and the lines it printed.
pub struct Worker {
    child: Child,
    lines: Receiver<String>,
}

/// Starts `options.workers` worker processes on the store `options.url`,
/// and returns once the `units` application-partitions are shared evenly
/// among them (each holds its share of the leases).
pub fn start(options: &Options, units: u32) -> Result<Vec<Worker>, Box<dyn std::error::Error>> {
    let program = std::env::current_exe()?;
    let mut workers = Vec::new();
    for _ in 0..options.workers {
        let mut child = Command::new(&program)
            .arg("worker")
            .args(["--url", &options.url])
            .args(["--partitions", &options.partitions.to_string()])
            .args(["--batch-size", &options.batch_size.to_string()])
            .args(["--lease-ttl-ms", &options.lease_ttl_ms.to_string()])
            .args(["--poll-interval-ms", &options.poll_interval_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("a worker without standard output")?;
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        workers.push(Worker { child, lines });
    }
    let (low, high) = (units / options.workers, units.div_ceil(options.workers));
    let mut held = vec![0; workers.len()];
    let deadline = Instant::now() + Duration::from_millis(10 * options.lease_ttl_ms.max(1000));
    while held.iter().sum::<u32>() != units || held.iter().any(|&n| n < low || n > high) {
        if Instant::now() > deadline {
            return Err(format!("the workers did not share the {units} partitions evenly: {held:?}").into());
        }
        for worker in &mut workers {
            if let Some(status) = worker.child.try_wait()? {
                return Err(format!("a worker stopped before it started work: {status}").into());
            }
        }
        for (worker, held) in workers.iter().zip(&mut held) {
            while let Ok(line) = worker.lines.try_recv() {
                if let Some(n) = line.split(" holds ").nth(1).and_then(|rest| rest.split(' ').next()) {
                    *held = n.parse()?;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("the workers hold {held:?} of the {units} application-partitions");
    Ok(workers)
}

/// Stops the workers (each finishes its batches and gives its leases back)
/// and answers how many notifications each processed.
pub fn stop(workers: Vec<Worker>) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let mut shares = Vec::new();
    for Worker { mut child, lines } in workers {
        // Closing standard input tells the worker to stop.
        drop(child.stdin.take());
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
        let processed = lines
            .iter()
            .find_map(|line| {
                let rest = line.split(" processed ").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .ok_or("a worker did not say what it processed")?;
        shares.push(processed);
    }
    Ok(shares)
}

/// Prints each worker's share of the notifications processed.
pub fn print_shares(shares: &[u64]) {
    let total: u64 = shares.iter().sum();
    if total == 0 {
        return;
    }
    let parts: Vec<String> = shares
        .iter()
        .enumerate()
        .map(|(i, &n)| format!("worker {}: {n} ({:.0}%)", i + 1, 100.0 * n as f64 / total as f64))
        .collect();
    println!("shares of {total} notifications processed: {}", parts.join(", "));
}
