/** What bench/dispatch.ts and its measuring process (dispatch-worker.ts) agree on. */

/** Requests in flight in the closed loop. */
export const WINDOW = 50
/** Connection budget of every variant (split evenly over the instances when there are four). */
export const CONNECTIONS = 48

/** One closed-loop round of one variant. */
export interface Sample {
  readonly reqPerS: number
  readonly cpuUsPerReq: number
}
