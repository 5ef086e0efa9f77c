//! Two ranks on loopback through Gloo, each a child process running this test binary's `rank_worker` under the
//! torchrun environment contract: all-reduce (sum, mean; f32 and i64), broadcast from rank 1, all-gather of byte
//! buffers of different lengths, barrier; and a rank that dies makes the other's next collective fail with an error
//! within the timeout instead of hanging.
use distributed::{ProcessGroup, RankEnv};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_rank(scenario: &str, rank: usize, world: usize, port: u16) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    RankEnv::local(rank, world, port).apply_to(&mut cmd);
    cmd.args(["--exact", "rank_worker", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("PGRS_DIST_SCENARIO", scenario)
        // the child's own libtest lines would read as extra results in the parent's log; panics go to stderr
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `scenario` on two ranks; both must exit 0 within `limit`.
fn run_two(scenario: &str, limit: Duration) -> bool {
    if !distributed::HAS_GLOO {
        assert!(
            std::env::var_os("PALIGEMMA_REQUIRE_GLOO").is_none(),
            "built without Gloo's headers (apt install libgloo-dev), but PALIGEMMA_REQUIRE_GLOO is set"
        );
        eprintln!("skipped: built without Gloo's headers (apt install libgloo-dev)");
        return false;
    }
    let port = free_port();
    let mut children: Vec<Child> = (0..2).map(|r| spawn_rank(scenario, r, 2, port)).collect();
    let start = Instant::now();
    let mut codes = vec![None, None];
    while codes.iter().any(Option::is_none) && start.elapsed() < limit {
        for (c, code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                *code = c.try_wait().unwrap().map(|s| s.code());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(
        codes,
        vec![Some(Some(0)), Some(Some(0))],
        "{scenario}: rank exit codes (None: still running)"
    );
    true
}

#[test]
fn two_ranks_run_every_collective() {
    run_two("collectives", Duration::from_secs(120));
}

#[test]
fn a_dead_rank_fails_the_other_within_the_timeout() {
    run_two("dead_peer", Duration::from_secs(120));
}

#[test]
fn one_rank_needs_no_process_group() {
    let pg = ProcessGroup::init(&RankEnv::single(), Duration::from_secs(1)).unwrap();
    let mut t = [Tensor::from_slice(&[1.5f32, 2.0])];
    pg.all_reduce_mean(&mut t).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t[0]).unwrap(), [1.5, 2.0]);
    assert_eq!(pg.all_gather_bytes(b"abc").unwrap(), vec![b"abc".to_vec()]);
    let mut ints = [Tensor::from_slice(&[3i64])];
    let e = pg.all_reduce_mean(&mut ints).unwrap_err().to_string();
    assert!(e.contains("mean of Int64"), "{e}");
    pg.barrier().unwrap();
}

/// One rank of a two-rank scenario (spawned by the tests above; skipped in a plain run).
#[test]
#[ignore]
fn rank_worker() {
    let Ok(scenario) = std::env::var("PGRS_DIST_SCENARIO") else { return };
    let env = RankEnv::from_env().unwrap();
    let timeout = Duration::from_secs(10);
    let pg = ProcessGroup::init(&env, timeout).unwrap();
    let r = pg.rank() as f32;
    match scenario.as_str() {
        "collectives" => {
            let mut t = [
                Tensor::full([3], (r + 1.0) as f64, (Kind::Float, tch::Device::Cpu)),
                Tensor::from_slice(&[r as i64, 7]),
            ];
            pg.all_reduce_sum(&mut t).unwrap();
            assert_eq!(Vec::<f32>::try_from(&t[0]).unwrap(), [3.0; 3]);
            assert_eq!(Vec::<i64>::try_from(&t[1]).unwrap(), [1, 14]);
            let mut m = [Tensor::from_slice(&[r * 4.0])];
            pg.all_reduce_mean(&mut m).unwrap();
            assert_eq!(Vec::<f32>::try_from(&m[0]).unwrap(), [2.0]);
            let mut b = Tensor::from_slice(&[r * 10.0, r]);
            pg.broadcast(&mut b, 1).unwrap();
            assert_eq!(Vec::<f32>::try_from(&b).unwrap(), [10.0, 1.0]);
            // gradients of mixed shapes and dtypes through 64-byte buckets: the sums equal per-tensor sums
            let grads = |r: f32| {
                vec![
                    Tensor::arange(20, (Kind::Float, tch::Device::Cpu)).view([4, 5])
                        * (r + 1.0) as f64,
                    Tensor::full([3], (r + 2.0) as f64, (Kind::Float, tch::Device::Cpu)),
                    Tensor::from_slice(&[r as i64 + 1, 5]),
                    Tensor::full([40], (r * 0.5) as f64, (Kind::Float, tch::Device::Cpu)),
                ]
            };
            let mut bucketed = grads(r);
            pg.all_reduce_sum_bucketed(&mut bucketed, 64).unwrap();
            let want: Vec<Tensor> = grads(0.0).iter().zip(grads(1.0)).map(|(a, b)| a + b).collect();
            for (got, want) in bucketed.iter().zip(&want) {
                assert_eq!(got.size(), want.size());
                assert!(got.equal(want), "{got:?} != {want:?}");
            }
            let mine: &[u8] = if pg.rank() == 0 { b"a" } else { b"bcd" };
            let all = pg.all_gather_bytes(mine).unwrap();
            assert_eq!(all, vec![b"a".to_vec(), b"bcd".to_vec()]);
            pg.barrier().unwrap();
        }
        "dead_peer" => {
            if pg.rank() == 1 {
                std::process::exit(0); // gone without a word, as a crashed rank is
            }
            let start = Instant::now();
            let mut t = [Tensor::from_slice(&[1.0f32])];
            let e = pg.all_reduce_sum(&mut t).unwrap_err().to_string();
            assert!(e.contains("all_reduce") && e.contains("rank 0 of 2"), "{e}");
            assert!(
                start.elapsed() < timeout + Duration::from_secs(20),
                "failed only after {:?}",
                start.elapsed()
            );
            eprintln!("rank 0 saw the dead peer after {:?}: {e}", start.elapsed());
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// A build without Gloo's headers refuses more than one rank, saying how to fix it.
#[test]
fn without_gloo_more_ranks_are_refused_with_the_fix() {
    if distributed::HAS_GLOO {
        return; // the property of the other build (PGRS_WITHOUT_GLOO=1 makes one)
    }
    let env = RankEnv { world_size: 2, master_port: 29500, ..RankEnv::single() };
    let e = ProcessGroup::init(&env, Duration::from_secs(1)).unwrap_err().to_string();
    assert!(e.contains("2 ranks") && e.contains("libgloo-dev"), "{e}");
}
