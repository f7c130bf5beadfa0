// Exponential time decay, as the built-in formula uses it (`decay_lambda` per hour), and time
// units (batch times are epoch milliseconds, ages milliseconds).

export const MS_PER_SECOND = 1_000;
export const MS_PER_MINUTE = 60_000;
export const MS_PER_HOUR = 3_600_000;
export const MS_PER_DAY = 86_400_000;

/** `exp(-λ·age)` for one event of age `ageMs`, λ per hour. */
export function expDecay(lambdaPerHour, ageMs) {
  return Math.exp((-lambdaPerHour / MS_PER_HOUR) * ageMs);
}

/** `E[exp(-k·age)]` of a group of events with the given age mean and variance, k = λ per ms:
 * `exp(-k·m) · (1 + k²·var / 2)`, the second-order expansion the host's built-in formula uses. */
export function expectedDecay(lambdaPerHour, ageMeanMs, ageVarMs2) {
  const k = lambdaPerHour / MS_PER_HOUR;
  return Math.exp(-k * ageMeanMs) * (1 + 0.5 * k * k * ageVarMs2);
}

/** The λ (per hour) whose decay halves a weight every `halfLifeHours`. */
export function lambdaForHalfLife(halfLifeHours) {
  return Math.LN2 / halfLifeHours;
}

// Numerically safe helpers: none returns NaN or infinity on finite input.

/** `num / den`, or 0 when `den` is 0 (or the quotient is not finite). */
export function safeDiv(num, den) {
  const q = num / den;
  return den === 0 || !Number.isFinite(q) ? 0 : q;
}

/** Lower bound of the Wilson score interval for a proportion (0 when `trials` is 0). */
export function wilsonLowerBound(successes, trials, z) {
  if (!(trials > 0) || !Number.isFinite(trials)) return 0;
  const p = Math.min(Math.max(successes / trials, 0), 1);
  const z2 = z * z;
  const centre = p + z2 / (2 * trials);
  const margin = z * Math.sqrt((p * (1 - p) + z2 / (4 * trials)) / trials);
  return Math.max((centre - margin) / (1 + z2 / trials), 0);
}

/** `ln(1 + x)` for `x >= 0`, 0 below. */
export function logVolume(x) {
  return x > 0 ? Math.log1p(x) : 0;
}

/** `x` if finite, else `fallback`. */
export function finiteOr(x, fallback) {
  return Number.isFinite(x) ? x : fallback;
}
