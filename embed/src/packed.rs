//! Shared pieces of the padding-free CPU forwards ([`crate::bert_packed`],
//! [`crate::llama_packed`]): linear layers as plain row-major matrices and work buffers that
//! are reused across batches.

use std::sync::Mutex;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::Tensor;
use rayon::prelude::*;

use crate::cpu_kernels::matmul;

/// Rows per rayon task in the row-wise passes.
pub(crate) const ROWS_PER_TASK: usize = 64;

/// A linear layer as a row-major `[d_in x d_out]` weight (Burn's layout) and its bias.
pub(crate) struct Dense {
    /// `[d_in x d_out]`, row-major.
    pub weight: Vec<f32>,
    /// The bias; zeros when the layer has none.
    pub bias: Vec<f32>,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

impl Dense {
    /// One Burn linear layer's weight and bias.
    pub fn from_module(linear: &Linear) -> Self {
        Self::concat(&[linear])
    }

    /// Several linear layers with the same input side by side: `[d_in x sum(d_out)]`.
    pub fn concat(linears: &[&Linear]) -> Self {
        let d_in = linears[0].weight.dims()[0];
        let parts: Vec<(Vec<f32>, Vec<f32>, usize)> = linears
            .iter()
            .map(|linear| {
                let d_out = linear.weight.dims()[1];
                let bias = match &linear.bias {
                    Some(bias) => param_values(bias),
                    None => vec![0.0; d_out],
                };
                (param_values(&linear.weight), bias, d_out)
            })
            .collect();
        let d_out: usize = parts.iter().map(|p| p.2).sum();
        let mut weight = Vec::with_capacity(d_in * d_out);
        for row in 0..d_in {
            for (w, _, width) in &parts {
                weight.extend_from_slice(&w[row * width..(row + 1) * width]);
            }
        }
        let bias = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
        Self {
            weight,
            bias,
            d_in,
            d_out,
        }
    }

    /// `out[rows x d_out] = input[rows x d_in] W`, plus the bias when `with_bias` (otherwise
    /// the caller fuses it into its next pass).
    pub fn forward(&self, input: &[f32], rows: usize, out: &mut [f32], with_bias: bool) {
        let out = &mut out[..rows * self.d_out];
        if with_bias {
            out.par_chunks_mut(self.d_out * ROWS_PER_TASK)
                .for_each(|chunk| {
                    for row in chunk.chunks_exact_mut(self.d_out) {
                        row.copy_from_slice(&self.bias);
                    }
                });
        }
        matmul(
            [rows, self.d_in, self.d_out],
            (input, self.d_in),
            (&self.weight, self.d_out, 1),
            (out, self.d_out),
            1.0,
            with_bias,
        );
    }

    /// `out[rows x d_out] += input[rows x d_in] W` (a residual connection in the GEMM; the
    /// bias is not added).
    pub fn accumulate(&self, input: &[f32], rows: usize, out: &mut [f32]) {
        matmul(
            [rows, self.d_in, self.d_out],
            (input, self.d_in),
            (&self.weight, self.d_out, 1),
            (&mut out[..rows * self.d_out], self.d_out),
            1.0,
            true,
        );
    }
}

/// Grows `buffer` to at least `len` values (reused buffers only ever grow).
pub(crate) fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

/// Consecutive batches of inputs already sorted by length (`lengths`, in that order): each
/// batch holds at most `batch_tokens` tokens (at least one input), and with `equal_lengths`
/// only inputs of one length (for graphs that cannot pack).
pub(crate) fn batch_ranges(
    lengths: &[usize],
    batch_tokens: usize,
    equal_lengths: bool,
) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < lengths.len() {
        let mut end = start + 1;
        let mut tokens = lengths[start];
        while end < lengths.len()
            && (!equal_lengths || lengths[end] == lengths[start])
            && tokens + lengths[end] <= batch_tokens
        {
            tokens += lengths[end];
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Batches per thread from which [`map_batches`] runs whole batches on the threads: enough
/// that batches of unequal sizes still keep every thread busy to the end.
const BATCHES_PER_THREAD: usize = 4;

/// The fewest tokens [`spread_batch_tokens`] cuts a batch down to: below about this many rows
/// the products' own efficiency falls faster than whole batches per thread gain.
const MIN_SPREAD_TOKENS: usize = 4096;

/// Tokens per batch for `total` tokens on `threads` threads: at most `batch_tokens`, and
/// small enough for [`BATCHES_PER_THREAD`] batches per thread (so [`map_batches`] runs whole
/// batches on the threads) while batches keep [`MIN_SPREAD_TOKENS`]. A packed forward's
/// values do not depend on the batches' company, so this changes only the speed and the
/// memory: 97,594 tokens asked in batches of 32,768 make 3 batches that each spread over 2
/// threads, or 8 of at most 12,200 that run whole, 6% more documents per second.
pub(crate) fn spread_batch_tokens(total: usize, batch_tokens: usize, threads: usize) -> usize {
    let spread = total.div_ceil(BATCHES_PER_THREAD * threads.max(1));
    batch_tokens.min(spread.max(MIN_SPREAD_TOKENS))
}

/// One work buffer set per rayon thread, kept across calls: buffers only grow, so after the
/// first batches a forward neither allocates nor touches fresh pages. (Rayon's `map_init`
/// would build a new one for every split of the work, zero-filling some 100 MB each time.)
pub(crate) struct Workspaces<W> {
    slots: Vec<Mutex<W>>,
}

impl<W: Default> Workspaces<W> {
    /// One empty workspace per thread of the current rayon pool.
    pub fn new() -> Self {
        Self {
            slots: (0..rayon::current_num_threads().max(1))
                .map(|_| Mutex::new(W::default()))
                .collect(),
        }
    }

    /// `work` on the calling thread's workspace; on a fresh one when that is busy (a call
    /// from another pool whose thread indices collide), so no call ever waits for another.
    pub fn with<T>(&self, work: impl FnOnce(&mut W) -> T) -> T {
        let index = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        match self.slots[index].try_lock() {
            Ok(mut workspace) => work(&mut workspace),
            Err(_) => work(&mut W::default()),
        }
    }
}

/// `forward(workspace, range)` over every batch of `ranges`, results in batch order. With at
/// least [`BATCHES_PER_THREAD`] batches per rayon thread, whole batches run on the threads,
/// each on one (its products then run on that thread), so no thread waits for another inside
/// a batch; with fewer, batches run one after another and each spreads its work over the
/// threads. Either way a batch gives the same values.
pub(crate) fn map_batches<W: Default + Send, T: Send>(
    workspaces: &Workspaces<W>,
    ranges: Vec<std::ops::Range<usize>>,
    forward: impl Fn(&mut W, std::ops::Range<usize>) -> T + Sync + Send,
) -> Vec<T> {
    if ranges.len() >= BATCHES_PER_THREAD * rayon::current_num_threads() {
        ranges
            .into_par_iter()
            .map(|range| workspaces.with(|workspace| forward(workspace, range)))
            .collect()
    } else {
        workspaces.with(|workspace| {
            ranges
                .into_iter()
                .map(|range| forward(workspace, range))
                .collect()
        })
    }
}

/// A parameter's values, row-major.
pub(crate) fn param_values<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
    crate::values(param.val())
}

/// Runs `work` on a pool of `threads` rayon threads (tests of thread-count independence).
#[cfg(test)]
pub(crate) fn on_threads<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_for_four_per_thread_down_to_the_floor() {
        // 97,594 tokens, 2 threads: 8 batches of ceil(97,594 / 8) = 12,200 at most.
        assert_eq!(spread_batch_tokens(97_594, 32_768, 2), 12_200);
        // Already small enough: the asked size stays.
        assert_eq!(spread_batch_tokens(97_594, 8_192, 2), 8_192);
        // Few tokens: never below the floor (nor above the asked size).
        assert_eq!(spread_batch_tokens(5_000, 32_768, 2), 4_096);
        assert_eq!(spread_batch_tokens(5_000, 2_048, 2), 2_048);
        // One thread: 4 batches.
        assert_eq!(spread_batch_tokens(40_000, 32_768, 1), 10_000);
    }

    /// Every batch runs on one of the pool's kept workspaces (none on a fresh one), in both
    /// branches of `map_batches`, and the next call finds them again.
    #[test]
    fn batches_reuse_one_workspace_per_thread_across_calls() {
        on_threads(2, || {
            let workspaces = Workspaces::<Vec<usize>>::new();
            let run = |batches: usize| {
                let ranges: Vec<_> = (0..batches).map(|b| b * 3..b * 3 + 3).collect();
                map_batches(&workspaces, ranges, |seen: &mut Vec<usize>, range| {
                    seen.push(range.start);
                    range.len()
                })
            };
            // 40 batches: whole batches on the threads; 3: one after another.
            assert_eq!(run(40), vec![3; 40]);
            assert_eq!(run(3), vec![3; 3]);
            let mut seen: Vec<usize> = workspaces
                .slots
                .iter()
                .flat_map(|slot| slot.lock().unwrap().clone())
                .collect();
            seen.sort_unstable();
            let mut expected: Vec<usize> = (0..40).chain(0..3).map(|b| b * 3).collect();
            expected.sort_unstable();
            assert_eq!(seen, expected);
            assert_eq!(workspaces.slots.len(), 2);
        });
    }
}
