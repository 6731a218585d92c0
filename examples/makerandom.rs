//! S4.2 (seed 004): makerandom — three coroutines draw random numbers until
//! one beats their threshold, sleeping `idx + 1` s between tries; coloured
//! per coroutine (off with NO_COLOR). Python's `random.seed(444)` becomes
//! seeded xorshift streams, so runs are repeatable (the numbers differ from
//! CPython's Mersenne Twister). `--scale F` (or `TULIP_TIME_SCALE`) scales the sleeps.

/// A tiny xorshift64* generator. Each coroutine draws from its own stream
/// (seeded from 444 and its number), so the values do not depend on which of
/// two coroutines waking in the same instant runs first.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(444 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `random.randint(0, 10)`.
    fn randint_0_10(&mut self) -> u64 {
        self.next_u64() % 11
    }
}

fn secs(s: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    let flag = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1).cloned());
    let scale = flag.or_else(|| std::env::var("TULIP_TIME_SCALE").ok());
    s * scale.and_then(|v| v.parse().ok()).unwrap_or(1.0)
}

/// ANSI colours: end, cyan, red, magenta.
fn colour(i: usize) -> &'static str {
    if std::env::var_os("NO_COLOR").is_some() {
        return "";
    }
    ["\x1b[0m", "\x1b[36m", "\x1b[91m", "\x1b[35m"][i]
}

async fn makerandom(idx: usize, threshold: u64) -> tulip::Result<u64> {
    let mut rng = Rng::new(idx as u64);
    let c = colour(idx + 1);
    println!("{c}Initiated makerandom({idx}).");
    let mut i = rng.randint_0_10();
    while i <= threshold {
        println!("{c}makerandom({idx}) == {i} too low; retrying.");
        tulip::sleep(secs(idx as f64 + 1.0)).await?;
        i = rng.randint_0_10();
    }
    println!("{c}---> Finished: makerandom({idx}) == {i}{}", colour(0));
    Ok(i)
}

fn main() -> tulip::Result<()> {
    let res = tulip::run(async {
        tulip::gather((0..3).map(|i| makerandom(i, 10 - i as u64 - 1))).await
    })?;
    println!();
    println!("r1: {}, r2: {}, r3: {}", res[0], res[1], res[2]);
    Ok(())
}
