//! Quad's cluster bandit (spec 1.5): clusters are arms; each round pulls the `arms_per_round`
//! arms with the best UCB "Cluster Score", probes a few documents of each, accepts a block of
//! documents from an arm whose reward `mean(q) - tau` is positive, and shares the reward with
//! neighbouring clusters weighted by `1 - d/gamma`.
//!
//! The arm itself always receives its own reward with weight 1 (spec: `i` is its own neighbour
//! since `d(i, i) = 0`; this also holds for `gamma = 0`).
//!
//! Beside the paper's rules (a fixed τ, a fixed block per positive pull), τ may be set from the
//! data (every arm is probed once first, and τ is set from those probe means:
//! [`RewardOffset::Coverage`] or [`RewardOffset::Quantile`]) and blocks may grow with the
//! reward ([`BlockRule::Proportional`]).

/// Which arms the bandit pulls before every arm has been pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitPolicy {
    /// The released code's rule: round 0 pulls arms 0, 1, 2, ... in index order, later
    /// rounds go by Cluster Score; with fewer rounds than `arms / arms_per_round`, high-index
    /// clusters may never be probed.
    #[default]
    IndexOrder,
    /// Every arm is pulled once (in index order) before any is pulled a second time, as UCB
    /// intends: unpulled arms come first in every round until none is left.
    AllOnce,
}

/// How the reward offset τ is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RewardOffset {
    /// A given τ (the paper's 0.002).
    Fixed(f64),
    /// From the data: every arm is probed once before any reward counts (arms in index
    /// order), then τ is this quantile (linear interpolation) of those first probe means, and
    /// the waiting pulls are rewarded with it in the order they were made. 0.5 accepts pulls
    /// that beat the median cluster.
    Quantile(f64),
    /// From the data, after the same first probes: the arms ranked by first probe mean, best
    /// first, are taken until they hold this many times the budget (documents, or tokens with
    /// a token budget); τ is midway between the last arm taken and the first left out, so a
    /// first pull is accepted exactly when its arm is among those taken. When every arm is
    /// needed, τ lies below the lowest mean by the means' spread.
    Coverage(f64),
}

impl RewardOffset {
    /// How τ is set, in words (for plans and reports).
    pub fn describe(&self) -> String {
        match self {
            RewardOffset::Fixed(tau) => format!("given: {tau}"),
            RewardOffset::Quantile(q) => {
                format!("the {q} quantile of every probed cluster's first probe mean")
            }
            RewardOffset::Coverage(times) => format!(
                "set so the clusters with the best first probe means, holding {times} x the budget, are accepted"
            ),
        }
    }
}

/// How many documents a positive pull accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockRule {
    /// `block_size` (the paper's rule), whatever the reward.
    #[default]
    Fixed,
    /// `block_size x reward / mean positive reward so far`, rounded, between 1 and
    /// `4 x block_size`: a pull twice as far above τ as the typical positive pull accepts
    /// twice the documents.
    Proportional,
}

/// Bandit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BanditConfig {
    /// Exploration weight α of the UCB term.
    pub alpha: f64,
    /// Reward offset τ subtracted from an arm's mean probe score.
    pub reward_offset: RewardOffset,
    /// How many documents a positive pull accepts.
    pub block_rule: BlockRule,
    /// Documents probed per pull (b).
    pub probe_size: usize,
    /// Arms pulled per round (M).
    pub arms_per_round: usize,
    /// Documents accepted from an arm per positive pull (B; the typical block under
    /// [`BlockRule::Proportional`]).
    pub block_size: usize,
    /// Rounds at most.
    pub max_rounds: usize,
    /// Stop once this much is accepted: documents, or tokens when the bandit is given each
    /// document's token count ([`QuadBandit::with_document_tokens`]).
    pub budget: u64,
    /// Which arms come first before every arm has been pulled.
    pub init_policy: InitPolicy,
}

/// One pull: which arm, in which round, its Cluster Score when chosen and its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    /// Round, from 0.
    pub round: usize,
    /// The arm.
    pub arm: usize,
    /// The pull's index for this arm (0 for its first pull): its probe documents are
    /// `[pull * b, (pull + 1) * b)` of the arm's order.
    pub pull: usize,
    /// The arm's Cluster Score when it was chosen.
    pub score: f64,
    /// Mean probe score minus τ.
    pub reward: f64,
    /// Whether a block was accepted.
    pub accepted: bool,
    /// Documents accepted: the arm's next `block` documents in its order (0 when rejected).
    pub block: usize,
}

/// The bandit's state (spec 1.5 names in brackets).
#[derive(Debug, Clone)]
pub struct QuadBandit {
    config: BanditConfig,
    sizes: Vec<usize>,
    /// Per arm, (neighbour, distance) with distance < γ, the arm itself excluded.
    neighbors: Vec<Vec<(usize, f64)>>,
    gamma: f64,
    /// Cumulative propagated reward [R].
    reward_sum: Vec<f64>,
    /// Reward updates received [T].
    updates: Vec<u64>,
    /// Times pulled [n].
    pulls: Vec<usize>,
    /// Accepted blocks [c].
    accepted: Vec<usize>,
    /// Documents accepted per arm (`c x B` under the fixed rule).
    taken: Vec<usize>,
    /// τ: given, or set once every arm has been probed.
    tau: Option<f64>,
    /// While τ is unknown: the pulls made, waiting for their reward (round, arm, score, q).
    waiting: Vec<(usize, usize, f64, f64)>,
    /// Sum and count of the positive rewards so far (the proportional rule's scale).
    positive: (f64, u64),
    /// Total updates [Tot].
    total_updates: u64,
    /// Cluster Score [CS].
    score: Vec<f64>,
    exhausted: Vec<bool>,
    round: usize,
    /// Per arm, the token count of each document in the arm's order, when the budget is in
    /// tokens.
    document_tokens: Option<Vec<Vec<u64>>>,
    /// Documents or tokens accepted so far.
    accepted_amount: u64,
}

impl QuadBandit {
    /// A fresh bandit over clusters of `sizes` documents; `neighbors[i]` lists the clusters
    /// `j != i` at distance `d(i, j) < gamma` with their distances (see [`neighbors_within`]).
    pub fn new(
        config: BanditConfig,
        sizes: Vec<usize>,
        neighbors: Vec<Vec<(usize, f64)>>,
        gamma: f64,
    ) -> Self {
        let k = sizes.len();
        assert_eq!(neighbors.len(), k, "one neighbour list per arm");
        let tau = match config.reward_offset {
            RewardOffset::Fixed(tau) => Some(tau),
            RewardOffset::Quantile(_) | RewardOffset::Coverage(_) => None,
        };
        Self {
            config,
            sizes,
            neighbors,
            gamma,
            reward_sum: vec![0.0; k],
            updates: vec![0; k],
            pulls: vec![0; k],
            accepted: vec![0; k],
            taken: vec![0; k],
            tau,
            waiting: Vec::new(),
            positive: (0.0, 0),
            total_updates: 0,
            score: vec![0.0; k],
            exhausted: vec![false; k],
            round: 0,
            document_tokens: None,
            accepted_amount: 0,
        }
    }

    /// Counts the budget in tokens: `tokens[arm][i]` is the token count of the arm's `i`-th
    /// document in its order; an arm's accepted blocks hold its documents in that order, one
    /// block after the other.
    pub fn with_document_tokens(mut self, tokens: Vec<Vec<u64>>) -> Self {
        assert_eq!(tokens.len(), self.sizes.len(), "one token list per arm");
        self.document_tokens = Some(tokens);
        self
    }

    /// Cluster Scores of every arm (`-inf` for exhausted arms).
    pub fn scores(&self) -> &[f64] {
        &self.score
    }

    /// Accepted blocks per arm.
    pub fn accepted_blocks(&self) -> &[usize] {
        &self.accepted
    }

    /// Pulls per arm.
    pub fn pulls(&self) -> &[usize] {
        &self.pulls
    }

    /// Updates received per arm (own and neighbours' rewards).
    pub fn updates(&self) -> &[u64] {
        &self.updates
    }

    /// Documents accepted so far.
    pub fn accepted_docs(&self) -> usize {
        self.taken.iter().sum()
    }

    /// τ: the given one, or the one set from the first probes (`None` before they are in).
    pub fn reward_offset(&self) -> Option<f64> {
        self.tau
    }

    /// Documents, or tokens with [`QuadBandit::with_document_tokens`], accepted so far.
    pub fn accepted_amount(&self) -> u64 {
        self.accepted_amount
    }

    fn budget_reached(&self) -> bool {
        self.accepted_amount >= self.config.budget
    }

    /// Whether `arm` can be pulled again: its next probe and block fit in it (fixed rule:
    /// `(n + 1) B` documents; proportional: `(n + 1) b` probed and one left to take).
    fn can_pull(&self, arm: usize) -> bool {
        let next = self.pulls[arm] + 1;
        match self.config.block_rule {
            BlockRule::Fixed => next * self.config.block_size <= self.sizes[arm],
            BlockRule::Proportional => {
                next * self.config.probe_size <= self.sizes[arm]
                    && self.taken[arm] < self.sizes[arm]
            }
        }
    }

    /// Step 1: the arms to pull this round: index order in round 0, then by Cluster Score
    /// (ties by index), with [`InitPolicy::AllOnce`] never-pulled arms first; while τ waits
    /// for the first probes only never-probed arms, in index order. An arm that cannot give
    /// another block is marked exhausted, its score set to `-inf`, and skipped.
    fn choose(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.sizes.len()).collect();
        let calibrating = self.tau.is_none();
        if self.round > 0 && !calibrating {
            let unpulled_first = self.config.init_policy == InitPolicy::AllOnce;
            order.sort_by(|&a, &b| {
                let fresh = |arm: usize| unpulled_first && self.pulls[arm] == 0;
                fresh(b)
                    .cmp(&fresh(a))
                    .then(self.score[b].total_cmp(&self.score[a]))
                    .then(a.cmp(&b))
            });
        }
        let mut chosen = Vec::with_capacity(self.config.arms_per_round);
        for arm in order {
            if chosen.len() == self.config.arms_per_round {
                break;
            }
            if self.exhausted[arm] || (calibrating && self.waiting.iter().any(|w| w.1 == arm)) {
                continue;
            }
            if !self.can_pull(arm) {
                self.exhausted[arm] = true;
                self.reward_sum[arm] = f64::NEG_INFINITY;
                self.score[arm] = f64::NEG_INFINITY;
                continue;
            }
            chosen.push(arm);
        }
        chosen
    }

    /// Step 3 for one pulled arm: count the pull, accept a block on a positive reward (unless
    /// the budget is already met), and propagate the reward to the arm and its neighbours.
    /// Returns the documents accepted.
    fn update(&mut self, arm: usize, reward: f64) -> usize {
        self.pulls[arm] += 1;
        let mut block = 0;
        if reward > 0.0 && !self.budget_reached() {
            self.positive.0 += reward;
            self.positive.1 += 1;
            let b = self.config.block_size;
            block = match self.config.block_rule {
                BlockRule::Fixed => b,
                BlockRule::Proportional => {
                    let typical = self.positive.0 / self.positive.1 as f64;
                    ((b as f64 * reward / typical).round() as usize).clamp(1, 4 * b)
                }
            }
            .min(self.sizes[arm] - self.taken[arm]);
            let start = self.taken[arm];
            self.accepted_amount += match &self.document_tokens {
                Some(tokens) => tokens[arm][start..start + block].iter().sum(),
                None => block as u64,
            };
            self.taken[arm] += block;
            self.accepted[arm] += 1;
        }
        let mut targets = vec![(arm, 1.0)];
        targets.extend(
            self.neighbors[arm]
                .iter()
                .map(|&(j, d)| (j, 1.0 - d / self.gamma)),
        );
        for (j, weight) in targets {
            self.reward_sum[j] += reward * weight;
            self.updates[j] += 1;
            self.total_updates += 1;
        }
        block
    }

    /// Rewards one pull made in `round` when the arm's score was `score`, and logs it.
    fn reward(&mut self, log: &mut Vec<Pull>, round: usize, arm: usize, score: f64, q: f64) {
        let tau = self.tau.expect("rewards wait for tau");
        let (pull, reward) = (self.pulls[arm], q - tau);
        let block = self.update(arm, reward);
        log.push(Pull {
            round,
            arm,
            pull,
            score,
            reward,
            accepted: block > 0,
            block,
        });
    }

    /// Sets τ from the waiting first probes (see [`RewardOffset`]) and rewards them in the
    /// order they were made.
    fn settle(&mut self, log: &mut Vec<Pull>) {
        if self.tau.is_some() {
            return;
        }
        let tau = match self.config.reward_offset {
            RewardOffset::Fixed(tau) => tau,
            RewardOffset::Quantile(quantile) => {
                let mut means: Vec<f64> = self.waiting.iter().map(|w| w.3).collect();
                means.sort_by(f64::total_cmp);
                quantile_of_sorted(&means, quantile)
            }
            RewardOffset::Coverage(times) => {
                let mut ranked: Vec<(f64, usize)> =
                    self.waiting.iter().map(|w| (w.3, w.1)).collect();
                ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let needed = times * self.config.budget as f64;
                let mut held = 0.0;
                let mut taken = 0;
                while taken < ranked.len() && held < needed {
                    held += self.arm_amount(ranked[taken].1) as f64;
                    taken += 1;
                }
                match (ranked.get(taken.wrapping_sub(1)), ranked.get(taken)) {
                    (Some(last), Some(first_out)) => (last.0 + first_out.0) / 2.0,
                    (Some(_), None) => {
                        let (high, low) = (ranked[0].0, ranked[ranked.len() - 1].0);
                        low - (high - low).max(1e-12)
                    }
                    _ => 0.0,
                }
            }
        };
        self.tau = Some(tau);
        for (round, arm, score, q) in std::mem::take(&mut self.waiting) {
            self.reward(log, round, arm, score, q);
        }
        self.rescore();
    }

    /// What an arm holds in budget units: documents, or tokens with a token budget.
    fn arm_amount(&self, arm: usize) -> u64 {
        match &self.document_tokens {
            Some(tokens) => tokens[arm].iter().sum(),
            None => self.sizes[arm] as u64,
        }
    }

    /// Step 4: `CS_j = R_j / T_j + alpha * sqrt(2 ln(Tot) / (T_j + 1))` (mean 0 before any
    /// update); exhausted arms stay at `-inf`.
    fn rescore(&mut self) {
        let log_total = (self.total_updates.max(1) as f64).ln();
        for j in 0..self.score.len() {
            if self.exhausted[j] {
                continue;
            }
            let t = self.updates[j] as f64;
            let mean = if self.updates[j] > 0 {
                self.reward_sum[j] / t
            } else {
                0.0
            };
            self.score[j] = mean + self.config.alpha * (2.0 * log_total / (t + 1.0)).sqrt();
        }
    }

    /// Runs rounds until the budget is reached (checked after every pull, so the loop stops
    /// exactly when it is), `max_rounds` pass or every arm is exhausted. Each round calls
    /// `probe` once with the round's `(arm, pull)` pairs and the amount accepted so far (so
    /// the caller can score all probe documents of a round in parallel and show progress);
    /// it returns, per pair, the mean score `q` of the arm's probe documents for its
    /// `pull`-th pull. A probe error ends the run with that error.
    pub fn run<E>(
        &mut self,
        mut probe: impl FnMut(&[(usize, usize)], u64) -> Result<Vec<f64>, E>,
    ) -> Result<Vec<Pull>, E> {
        let mut log = Vec::new();
        while self.round < self.config.max_rounds && !self.budget_reached() {
            let mut chosen = self.choose();
            if chosen.is_empty() && self.tau.is_none() {
                // Every arm has had its first probe: τ can be set.
                self.settle(&mut log);
                if self.budget_reached() {
                    break;
                }
                chosen = self.choose();
            }
            if chosen.is_empty() {
                break;
            }
            let requests: Vec<(usize, usize)> =
                chosen.iter().map(|&arm| (arm, self.pulls[arm])).collect();
            let means = probe(&requests, self.accepted_amount)?;
            assert_eq!(means.len(), requests.len(), "one mean per probed arm");
            for (&arm, q) in chosen.iter().zip(means) {
                let score = self.score[arm];
                if self.tau.is_none() {
                    self.waiting.push((self.round, arm, score, q));
                    continue;
                }
                self.reward(&mut log, self.round, arm, score, q);
                if self.budget_reached() {
                    break;
                }
            }
            self.rescore();
            self.round += 1;
        }
        // Rounds ran out while τ waited: the first probes still count.
        self.settle(&mut log);
        Ok(log)
    }
}

/// The `q`-quantile of sorted `values` by linear interpolation between order statistics
/// (0 for none).
fn quantile_of_sorted(values: &[f64], q: f64) -> f64 {
    match values.len() {
        0 => 0.0,
        n => {
            let at = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
            values[lo] + (values[hi] - values[lo]) * (at - lo as f64)
        }
    }
}

/// Per cluster, the other clusters at cosine distance `1 - cos(c_i, c_j)` below `gamma`, with
/// their distances. `centroids` holds `k` rows of `dim` values (any norm).
pub fn neighbors_within(centroids: &[f32], dim: usize, gamma: f64) -> Vec<Vec<(usize, f64)>> {
    let k = centroids.len() / dim.max(1);
    let unit: Vec<Vec<f64>> = centroids
        .chunks(dim)
        .map(|c| {
            let norm = c
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE);
            c.iter().map(|&x| f64::from(x) / norm).collect()
        })
        .collect();
    (0..k)
        .map(|i| {
            (0..k)
                .filter(|&j| j != i)
                .filter_map(|j| {
                    let cos: f64 = unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum();
                    let d = 1.0 - cos;
                    (d < gamma).then_some((j, d))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(alpha: f64, arms: usize, block: usize, budget: usize, rounds: usize) -> BanditConfig {
        BanditConfig {
            alpha,
            reward_offset: RewardOffset::Fixed(0.0),
            block_rule: BlockRule::Fixed,
            probe_size: 1,
            arms_per_round: arms,
            block_size: block,
            max_rounds: rounds,
            budget: budget as u64,
            init_policy: InitPolicy::IndexOrder,
        }
    }

    #[test]
    fn all_once_probes_every_arm_before_exploiting_and_index_order_may_not() {
        // Six arms of 100 documents, two pulled per round; arm 0 rewards 1.0, the rest 0.5, so
        // after round 0 the score prefers arms 0 and 1 forever under index order.
        let probe = |requests: &[(usize, usize)], _: u64| -> Result<Vec<f64>, ()> {
            Ok(requests
                .iter()
                .map(|&(arm, _)| if arm == 0 { 1.0 } else { 0.5 })
                .collect())
        };
        let pulled = |policy: InitPolicy| {
            let mut c = config(1e-4, 2, 10, 60, 3);
            c.init_policy = policy;
            let mut b = QuadBandit::new(c, vec![100; 6], vec![Vec::new(); 6], 0.2);
            b.run(probe).unwrap();
            b.pulls().to_vec()
        };
        assert_eq!(pulled(InitPolicy::IndexOrder), [3, 3, 0, 0, 0, 0]);
        assert_eq!(pulled(InitPolicy::AllOnce), [1, 1, 1, 1, 1, 1]);
        // Once every arm has had its pull (rounds 0-2), the scores decide again: round 3 takes
        // arm 0 (mean 1.0) and arm 1 (first of the 0.5 ties), round 4 arm 0 again and arm 2
        // (a 0.5 arm with one update has the larger exploration term than arm 1 with two).
        let mut c = config(1e-4, 2, 10, 100, 5);
        c.init_policy = InitPolicy::AllOnce;
        let mut b = QuadBandit::new(c, vec![100; 6], vec![Vec::new(); 6], 0.2);
        b.run(probe).unwrap();
        assert_eq!(b.pulls(), [3, 2, 2, 1, 1, 1]);
    }

    /// Runs `b` with a fixed mean probe score per arm.
    fn run_fixed(b: &mut QuadBandit, q: impl Fn(usize) -> f64) -> Vec<Pull> {
        b.run(|req, _| Ok::<_, ()>(req.iter().map(|&(arm, _)| q(arm)).collect()))
            .unwrap()
    }

    fn isolated(k: usize) -> Vec<Vec<(usize, f64)>> {
        vec![Vec::new(); k]
    }

    #[test]
    fn ucb_after_one_round_by_hand() {
        // One arm pulled with reward r: Tot = 1, CS = r + alpha * sqrt(2 ln 1 / 2) = r exactly.
        let mut b = QuadBandit::new(config(0.7, 1, 1, 1000, 1), vec![100, 100], isolated(2), 0.2);
        run_fixed(&mut b, |_| 0.0123);
        assert_eq!(b.scores()[0], 0.0123);
        assert_eq!(b.scores()[1], 0.0);
        // A second round: Tot = 2, T_0 = 2, R_0 = 0.0123 + 0.0123.
        let mut b = QuadBandit::new(config(0.7, 1, 1, 1000, 2), vec![100, 100], isolated(2), 0.2);
        run_fixed(&mut b, |_| 0.0123);
        let expected = 0.0123 + 0.7 * (2.0 * 2f64.ln() / 3.0).sqrt();
        assert!((b.scores()[0] - expected).abs() < 1e-15);
        assert_eq!(b.scores()[1], 0.7 * (2.0 * 2f64.ln()).sqrt());
    }

    #[test]
    fn neighbours_get_the_reward_weighted_by_distance() {
        // d(0, 1) = 0.1 with gamma = 0.2: arm 1 receives 0.5 r and one update.
        let neighbors = vec![vec![(1, 0.1)], vec![(0, 0.1)], vec![]];
        let mut b = QuadBandit::new(config(0.0, 1, 1, 1000, 1), vec![50; 3], neighbors, 0.2);
        run_fixed(&mut b, |_| 0.04);
        assert_eq!(b.updates(), [1, 1, 0]);
        assert_eq!(b.scores()[1], 0.02);
        assert_eq!(b.scores()[0], 0.04);
        // A negative reward propagates too.
        let neighbors = vec![vec![(1, 0.1)], vec![(0, 0.1)], vec![]];
        let mut b = QuadBandit::new(config(0.0, 1, 1, 1000, 1), vec![50; 3], neighbors, 0.2);
        run_fixed(&mut b, |_| -0.04);
        assert_eq!(b.scores()[1], -0.02);
        assert_eq!(b.accepted_blocks(), [0, 0, 0]);
    }

    #[test]
    fn known_rewards_favour_the_best_arm_and_large_alpha_explores_round_robin() {
        let rewards = [0.01, -0.01, 0.005];
        let mut greedy = QuadBandit::new(
            config(1e-4, 1, 1, 10_000, 60),
            vec![1000; 3],
            isolated(3),
            0.0,
        );
        run_fixed(&mut greedy, |arm| rewards[arm]);
        assert_eq!(
            greedy.accepted_blocks()[1],
            0,
            "the negative arm is never accepted"
        );
        let pulls = greedy.pulls();
        assert!(pulls[0] > pulls[1] && pulls[0] > pulls[2], "{pulls:?}");
        let mut explore = QuadBandit::new(
            config(1e6, 1, 1, 10_000, 60),
            vec![1000; 3],
            isolated(3),
            0.0,
        );
        run_fixed(&mut explore, |arm| rewards[arm]);
        let pulls = explore.pulls();
        let (lo, hi) = (pulls.iter().min().unwrap(), pulls.iter().max().unwrap());
        assert!(hi - lo <= 1, "round-robin: {pulls:?}");
        assert_eq!(explore.accepted_blocks()[1], 0);
    }

    #[test]
    fn exhausted_arms_are_skipped_and_the_budget_stops_exactly() {
        // Arm 1 holds fewer documents than one block: never pulled, its score -inf.
        let mut b = QuadBandit::new(
            config(0.0, 2, 10, 1000, 5),
            vec![100, 9, 100],
            isolated(3),
            0.2,
        );
        let log = run_fixed(&mut b, |_| 0.01);
        assert!(log.iter().all(|p| p.arm != 1));
        assert_eq!(b.scores()[1], f64::NEG_INFINITY);
        // Budget 30 with blocks of 10 and every reward positive: exactly three accepted blocks,
        // the third pull ending the run mid-round.
        let mut b = QuadBandit::new(
            config(0.0, 2, 10, 30, 100),
            vec![100, 100, 100],
            isolated(3),
            0.2,
        );
        let log = run_fixed(&mut b, |_| 0.01);
        assert_eq!(b.accepted_docs(), 30);
        assert_eq!(log.len(), 3);
        assert_eq!((log[2].round, log[2].arm), (1, 0));
        // An arm runs out after size / block pulls.
        let mut b = QuadBandit::new(config(0.0, 1, 10, 1000, 100), vec![25], isolated(1), 0.2);
        let log = run_fixed(&mut b, |_| 0.01);
        assert_eq!(log.len(), 2);
        assert_eq!(b.accepted_docs(), 20);
        // Probe indices follow the arm's pulls.
        assert_eq!(log.iter().map(|p| p.pull).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_token_budget_counts_the_accepted_blocks_tokens() {
        // Blocks of 2: arm 0's blocks hold 5 + 7 = 12 and 100 + 1 = 101 tokens. Budget 13:
        // the first block (12) is not enough, the second ends the run at 113.
        let tokens = vec![vec![5, 7, 100, 1], vec![1; 4]];
        let mut b = QuadBandit::new(config(0.0, 1, 2, 13, 10), vec![4, 4], isolated(2), 0.2)
            .with_document_tokens(tokens);
        let log = run_fixed(&mut b, |arm| if arm == 0 { 0.01 } else { -0.01 });
        assert_eq!(log.len(), 2);
        assert_eq!(b.accepted_amount(), 113);
        assert_eq!(b.accepted_blocks(), [2, 0]);
    }

    #[test]
    fn each_round_probes_its_arms_at_their_pull_index_and_errors_stop_the_run() {
        let mut b = QuadBandit::new(config(0.0, 2, 1, 1000, 3), vec![10; 3], isolated(3), 0.2);
        let mut seen = Vec::new();
        b.run(|req, _| {
            seen.push(req.to_vec());
            Ok::<_, ()>(req.iter().map(|&(arm, _)| [0.3, 0.2, 0.1][arm]).collect())
        })
        .unwrap();
        // Round 0 in index order, then by score: arm 0 (0.3) and arm 1 (0.2) again.
        assert_eq!(
            seen,
            [
                vec![(0, 0), (1, 0)],
                vec![(0, 1), (1, 1)],
                vec![(0, 2), (1, 2)]
            ]
        );
        let mut b = QuadBandit::new(config(0.0, 2, 1, 1000, 3), vec![10; 3], isolated(3), 0.2);
        assert_eq!(
            b.run(|_, _| Err::<Vec<f64>, _>("no model")),
            Err("no model")
        );
        assert_eq!(b.pulls(), [0, 0, 0]);
    }

    #[test]
    fn neighbours_from_centroid_cosine_distance() {
        // Unit vectors at 0, ~25.8 and 90 degrees: cos = 0.9 -> d = 0.1 < 0.2; d = 1 otherwise.
        let c = [1.0f32, 0.0, 0.9, (1.0f32 - 0.81).sqrt(), 0.0, 2.0];
        let n = neighbors_within(&c, 2, 0.2);
        assert_eq!(n[0].len(), 1);
        assert_eq!(n[0][0].0, 1);
        assert!((n[0][0].1 - 0.1).abs() < 1e-6);
        assert_eq!(n[1].iter().map(|x| x.0).collect::<Vec<_>>(), [0]);
        assert!(n[2].is_empty());
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([0.1, 0.2, 0.3, 0.4], q) for q = 0, 0.25, 0.5, 1 (linear method).
        let v = [0.1, 0.2, 0.3, 0.4];
        for (q, want) in [(0.0, 0.1), (0.25, 0.175), (0.5, 0.25), (1.0, 0.4)] {
            assert!((quantile_of_sorted(&v, q) - want).abs() < 1e-12, "{q}");
        }
        assert_eq!(quantile_of_sorted(&[], 0.5), 0.0);
    }

    #[test]
    fn tau_from_the_first_probes_waits_until_every_arm_is_probed() {
        // Four arms with means 0.1, 0.4, 0.2, 0.3, two pulled per round: rounds 0 and 1 probe
        // arms 0-1 and 2-3 (index order, whatever the init policy); tau is then their median,
        // 0.25, and the four waiting pulls are rewarded in order: arms 1 and 3 accepted.
        let q = [0.1, 0.4, 0.2, 0.3];
        let mut c = config(1e-4, 2, 10, 1000, 2);
        c.reward_offset = RewardOffset::Quantile(0.5);
        let mut b = QuadBandit::new(c, vec![100; 4], isolated(4), 0.2);
        let mut seen = Vec::new();
        let log = b
            .run(|req, accepted| {
                seen.push((req.to_vec(), accepted));
                Ok::<_, ()>(req.iter().map(|&(arm, _)| q[arm]).collect())
            })
            .unwrap();
        assert_eq!(seen, [(vec![(0, 0), (1, 0)], 0), (vec![(2, 0), (3, 0)], 0)]);
        assert_eq!(b.reward_offset(), Some(0.25));
        let rounds: Vec<(usize, usize, bool)> =
            log.iter().map(|p| (p.round, p.arm, p.accepted)).collect();
        assert_eq!(
            rounds,
            [(0, 0, false), (0, 1, true), (1, 2, false), (1, 3, true)]
        );
        assert!((log[1].reward - 0.15).abs() < 1e-12);
        assert_eq!(b.accepted_docs(), 20);
        // With more rounds, exploitation follows: the third round pulls the two accepted arms
        // and reports the 20 documents accepted so far.
        let mut c = config(1e-4, 2, 10, 1000, 3);
        c.reward_offset = RewardOffset::Quantile(0.5);
        let mut b = QuadBandit::new(c, vec![100; 4], isolated(4), 0.2);
        let mut third = None;
        b.run(|req, accepted| {
            if req[0].1 == 1 || req.get(1).is_some_and(|r| r.1 == 1) {
                third = Some((req.to_vec(), accepted));
            }
            Ok::<_, ()>(req.iter().map(|&(arm, _)| q[arm]).collect())
        })
        .unwrap();
        assert_eq!(third, Some((vec![(1, 1), (3, 1)], 20)));
    }

    #[test]
    fn proportional_blocks_follow_the_reward_over_its_running_mean() {
        // tau 0, B = 10, arms with rewards 0.1 and 0.3, both pulled each round (alpha 0).
        // Round 0 (index order): arm 0 is the first positive pull (mean 0.1): 10; arm 1:
        // 10 x 0.3 / 0.2 = 15. Round 1 (by score, arm 1 first): 10 x 0.3 / (0.7 / 3) = 12.9,
        // so 13; arm 0: 10 x 0.1 / (0.8 / 4) = 5.
        let mut c = config(0.0, 2, 10, 1000, 2);
        c.block_rule = BlockRule::Proportional;
        let mut b = QuadBandit::new(c, vec![100; 2], isolated(2), 0.2);
        let log = run_fixed(&mut b, |arm| [0.1, 0.3][arm]);
        let blocks: Vec<(usize, usize)> = log.iter().map(|p| (p.arm, p.block)).collect();
        assert_eq!(blocks, [(0, 10), (1, 15), (1, 13), (0, 5)]);
        assert_eq!(b.accepted_docs(), 43);
        // Five pulls at 0.01 then one at 1.0: 10 x 1.0 / (1.05 / 6) = 57 is capped at 4 B = 40,
        // and at the 35 documents the arm holds.
        for (size, last) in [(100, 40), (35, 35)] {
            let mut c = config(0.0, 6, 10, 1000, 1);
            c.block_rule = BlockRule::Proportional;
            let mut b = QuadBandit::new(c, vec![100, 100, 100, 100, 100, size], isolated(6), 0.2);
            let log = run_fixed(&mut b, |arm| if arm == 5 { 1.0 } else { 0.01 });
            let blocks: Vec<usize> = log.iter().map(|p| p.block).collect();
            assert_eq!(blocks, [10, 10, 10, 10, 10, last]);
        }
    }

    #[test]
    fn coverage_tau_takes_the_best_arms_until_they_hold_the_budget_times_coverage() {
        // Means 0.1, 0.4, 0.2, 0.3 for arms of 100, 50, 80, 60 documents; budget 50,
        // coverage 2 (100 documents): arm 1 (0.4, 50) then arm 3 (0.3, 60) hold 110, so tau is
        // midway between 0.3 and the next best, 0.2: 0.25; arms 1 and 3 are accepted.
        let q = [0.1, 0.4, 0.2, 0.3];
        let sizes = vec![100, 50, 80, 60];
        let mut c = config(1e-4, 4, 10, 50, 1);
        c.reward_offset = RewardOffset::Coverage(2.0);
        let mut b = QuadBandit::new(c.clone(), sizes.clone(), isolated(4), 0.2);
        let log = run_fixed(&mut b, |arm| q[arm]);
        assert!((b.reward_offset().unwrap() - 0.25).abs() < 1e-12);
        let accepted: Vec<usize> = log.iter().filter(|p| p.accepted).map(|p| p.arm).collect();
        assert_eq!(accepted, [1, 3]);
        // Counted in tokens (every document 2 tokens; budget 50 tokens = 25 documents, needing
        // 100 tokens): arm 1 alone holds 100 tokens, so tau = (0.4 + 0.3) / 2.
        let mut b = QuadBandit::new(c.clone(), sizes.clone(), isolated(4), 0.2)
            .with_document_tokens(sizes.iter().map(|&n| vec![2; n]).collect());
        run_fixed(&mut b, |arm| q[arm]);
        assert!((b.reward_offset().unwrap() - 0.35).abs() < 1e-12);
        // Every arm needed (coverage 10 = 500 documents of 290): tau below the lowest mean by
        // the spread, 0.1 - 0.3, and every first pull is accepted.
        c.reward_offset = RewardOffset::Coverage(10.0);
        let mut b = QuadBandit::new(c, sizes, isolated(4), 0.2);
        let log = run_fixed(&mut b, |arm| q[arm]);
        assert!((b.reward_offset().unwrap() + 0.2).abs() < 1e-12);
        assert!(log.iter().all(|p| p.accepted));
    }
}
