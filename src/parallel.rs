//! Work split over a few threads, for large configs and plans: the items
//! in consecutive slices, one slice per thread (this thread takes the
//! first), the results in slice order, so the same as on one thread.

/// At most this many threads.
pub const MAX_THREADS: usize = 4;

/// Threads for `n` items: one below `per_thread` items (a thread costs
/// more than it saves), else as many as the machine has, up to
/// [`MAX_THREADS`].
pub fn threads_for(n: usize, per_thread: usize) -> usize {
    if n < per_thread {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |p| p.get()).min(MAX_THREADS)
}

/// `f` over `items` cut into `threads` consecutive slices (at least one
/// item each), on scoped threads; the results in slice order. A panic in a
/// thread goes on in this one.
pub fn map_slices<'a, T: Sync, R: Send>(items: &'a [T], threads: usize, f: impl Fn(&'a [T]) -> R + Sync) -> Vec<R> {
    let slices: Vec<&'a [T]> = items.chunks(items.len().div_ceil(threads.max(1)).max(1)).collect();
    if slices.len() <= 1 {
        return slices.into_iter().map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = slices[1..].iter().map(|slice| scope.spawn(move || f(slice))).collect();
        let first = f(slices[0]);
        let rest = handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        std::iter::once(first).chain(rest).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_come_back_in_order() {
        let items: Vec<u32> = (0..10).collect();
        for threads in [1, 2, 3, 4, 20] {
            let sums = map_slices(&items, threads, |s| s.to_vec());
            assert_eq!(sums.concat(), items, "{threads} threads");
            assert!(sums.len() <= threads && sums.iter().all(|s| !s.is_empty()), "{threads} threads: {sums:?}");
        }
        assert!(map_slices(&[] as &[u32], 4, |s| s.len()).is_empty());
        assert_eq!(threads_for(10, 512), 1);
    }
}
