//! The core's [`Runtime`] on a host with a clock and threads: every stage timed, and the
//! display image encoded on a second thread while the thumbnail is made and encoded.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use imgsvc_core::{Policy, ProcessError, Processed, Runtime, Stage};

/// Time spent in each stage of one `process` call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes([Duration; Stage::ALL.len()]);

impl StageTimes {
    pub fn get(&self, stage: Stage) -> Duration {
        self.0[index(stage)]
    }

    /// `(stage, seconds)` for every stage, in pipeline order.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, Duration)> + '_ {
        Stage::ALL.into_iter().map(|stage| (stage, self.get(stage)))
    }
}

fn index(stage: Stage) -> usize {
    Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0)
}

/// Runs the core with timed stages, in parallel when `parallel` (two or more cores).
pub struct HostRuntime {
    parallel: bool,
    times: Mutex<StageTimes>,
}

impl HostRuntime {
    pub fn new(parallel: bool) -> HostRuntime {
        HostRuntime {
            parallel,
            times: Mutex::new(StageTimes::default()),
        }
    }

    pub fn times(&self) -> StageTimes {
        *self
            .times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Runtime for HostRuntime {
    fn stage<T>(&self, stage: Stage, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = work();
        let elapsed = started.elapsed();
        let mut times = self
            .times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        times.0[index(stage)] += elapsed;
        result
    }

    fn join<A: Send, B: Send>(
        &self,
        a: impl FnOnce() -> A + Send,
        b: impl FnOnce() -> B + Send,
    ) -> (A, B) {
        if !self.parallel {
            return (a(), b());
        }
        std::thread::scope(|scope| {
            let b = scope.spawn(b);
            let a = a();
            // A panic in `b` is re-raised here, as it would have been had it run inline.
            let b = b
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (a, b)
        })
    }
}

/// `imgsvc_core::process` with timed stages and the parallel encode.
pub fn process_timed(
    bytes: &[u8],
    policy: &Policy,
    parallel: bool,
) -> (Result<Processed, ProcessError>, StageTimes) {
    let runtime = HostRuntime::new(parallel);
    let result = imgsvc_core::process_with(bytes, policy, &runtime);
    (result, runtime.times())
}

/// Whether this process may use more than one core (asked once: it reads cgroup files).
pub fn machine_is_parallel() -> bool {
    static PARALLEL: OnceLock<bool> = OnceLock::new();
    *PARALLEL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut png = Vec::new();
        let image = image::RgbImage::from_fn(900, 500, |x, y| image::Rgb([x as u8, y as u8, 7]));
        image::DynamicImage::ImageRgb8(image)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    #[test]
    fn parallel_and_timed_runs_give_the_cores_bytes_and_time_every_stage() {
        let bytes = sample();
        let policy = Policy::default();
        let reference = imgsvc_core::process(&bytes, &policy).unwrap();
        for parallel in [false, true] {
            let (result, times) = process_timed(&bytes, &policy, parallel);
            assert_eq!(
                result.as_ref().ok(),
                Some(&reference),
                "parallel={parallel}"
            );
            for (stage, time) in times.iter() {
                assert!(time > Duration::ZERO, "{stage:?} not timed");
            }
        }
    }

    #[test]
    fn a_refusal_times_only_the_stages_that_ran() {
        let (result, times) = process_timed(b"<html>", &Policy::default(), true);
        assert_eq!(result.err().map(|e| e.code()), Some("unsupported_format"));
        assert!(times.get(Stage::Decode) > Duration::ZERO);
        assert_eq!(times.get(Stage::EncodeDisplay), Duration::ZERO);
    }
}
