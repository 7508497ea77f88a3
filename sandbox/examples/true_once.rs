//! Median time of a sandbox running `/bin/true` (for profiling); exits non-zero if a run fails:
//! `cargo run --release -p sandbox --example true_once [rounds]` (`PRIVILEGED=1`: `Builder::privileged()`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let network = match std::env::var("NET").as_deref() {
        Ok("host") => sandbox::Network::Host,
        _ => sandbox::Network::Loopback,
    };
    let mut b = sandbox::Sandbox::builder().network(network);
    if std::env::var_os("PRIVILEGED").is_some() {
        b = b.privileged();
    }
    let sb = b.build()?;
    for _ in 0..20 {
        if !sb.command("/bin/true").status()?.success() {
            return Err("/bin/true failed in a sandbox".into());
        }
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        if !sb.command("/bin/true").status()?.success() {
            return Err("/bin/true failed in a sandbox".into());
        }
        times.push(t.elapsed());
    }
    times.sort();
    println!("median of {rounds}: {:?}", times[rounds / 2]);
    Ok(())
}
