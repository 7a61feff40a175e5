/**
 * Waiting on events with deadlines: the only way tests synchronise (never a bare sleep).
 */
import { once, type EventEmitter } from 'node:events'
import type { WayfindEvents } from '../../src/events.js'

/** Rejects with a clear message when `promise` has not settled within `timeoutMs`. */
export async function withDeadline<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`))
    }, timeoutMs)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Waits for one `name` event of a Node EventEmitter. */
export async function waitForEvent<T = unknown>(
  emitter: EventEmitter,
  name: string,
  timeoutMs = 5_000,
): Promise<T> {
  const ac = new AbortController()
  try {
    const [value] = (await withDeadline(
      once(emitter, name, { signal: ac.signal }),
      timeoutMs,
      `event "${name}"`,
    )) as [T]
    return value
  } finally {
    ac.abort()
  }
}

/** Minimal shape of wayfind's `events` API (on returns an unsubscribe function). */
export interface OnApi<E> {
  on<K extends keyof E>(type: K, handler: (event: E[K]) => void): () => void
}

/**
 * Waits until an event of `type` satisfies `predicate` (first one when omitted). The predicate
 * is evaluated on each event; the handler is removed when done.
 */
export function waitFor<K extends keyof E, E extends object = WayfindEvents>(
  events: OnApi<E>,
  type: K,
  predicate: (event: E[K]) => boolean = () => true,
  timeoutMs = 5_000,
): Promise<E[K]> {
  let off: (() => void) | undefined
  const p = new Promise<E[K]>((resolve) => {
    off = events.on(type, (event) => {
      if (predicate(event)) resolve(event)
    })
  })
  return withDeadline(p, timeoutMs, `a "${String(type)}" event`).finally(() => off?.())
}

/**
 * Re-evaluates `check` whenever `poke` fires or every `intervalMs`, until it returns a value
 * other than undefined. For observing external state (a registry, a file) that has no event
 * of its own; the deadline still bounds it.
 */
export async function eventually<T>(
  check: () => T | undefined | Promise<T | undefined>,
  {
    timeoutMs = 5_000,
    intervalMs = 20,
    what = 'a condition',
  }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const started = Date.now()
  let lastError: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) {
      lastError = err
    }
    if (Date.now() - started > timeoutMs)
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError })
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
