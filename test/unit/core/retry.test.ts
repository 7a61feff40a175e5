import { describe, expect, it } from 'vitest'
import { Backoff } from '../../../src/core/backoff.js'
import { retryWithin } from '../../../src/core/retry.js'

const quick = (): Backoff => new Backoff({ initialMs: 1, maxMs: 5, random: () => 0 })
const transient = new Error('unreachable')
const refused = new Error('refused')

describe('retryWithin', () => {
  it('retries transient failures until an attempt succeeds', async () => {
    let calls = 0
    const value = await retryWithin(
      () => (++calls < 3 ? Promise.reject(transient) : Promise.resolve('ok')),
      {
        timeoutMs: 5_000,
        backoff: quick(),
        signal: new AbortController().signal,
        retryable: (e) => e === transient,
      },
      () => new Error('exhausted'),
    )
    expect(value).toBe('ok')
    expect(calls).toBe(3)
  })

  it('throws a non-retryable failure at once', async () => {
    let calls = 0
    await expect(
      retryWithin(
        () => {
          calls++
          return Promise.reject(refused)
        },
        {
          timeoutMs: 5_000,
          backoff: quick(),
          signal: new AbortController().signal,
          retryable: (e) => e === transient,
        },
        () => new Error('exhausted'),
      ),
    ).rejects.toBe(refused)
    expect(calls).toBe(1)
  })

  it('gives up once the budget is spent, reporting the attempts and the last error', async () => {
    let t = 0
    const seen: { error: unknown; attempts: number }[] = []
    await expect(
      retryWithin(
        () => {
          t += 40 // each attempt "takes" 40 ms on the injected clock
          return Promise.reject(transient)
        },
        {
          timeoutMs: 100,
          backoff: quick(),
          signal: new AbortController().signal,
          retryable: () => true,
          now: () => t,
        },
        (f) => {
          seen.push(f)
          return new Error('exhausted')
        },
      ),
    ).rejects.toThrow('exhausted')
    expect(seen).toEqual([{ error: transient, attempts: 3, elapsedMs: 120 }])
  })

  it('stops with the signal reason when aborted between attempts', async () => {
    const ac = new AbortController()
    const reason = new Error('stop')
    await expect(
      retryWithin(
        () => {
          ac.abort(reason)
          return Promise.reject(transient)
        },
        { timeoutMs: 5_000, backoff: quick(), signal: ac.signal, retryable: () => true },
        () => new Error('exhausted'),
      ),
    ).rejects.toBe(reason)
  })
})
