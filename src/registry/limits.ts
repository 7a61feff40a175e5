/**
 * Bounds on what a registry may hand us, as provider options (`consul({ limits })`,
 * `etcd({ limits })`). One place for the defaults, their reasons and their validation, so every
 * provider reads the same names. The reasoning behind each number is in docs/registry-answers.md.
 */
import { constants } from 'node:buffer'
import { InvalidOptionError } from '../errors.js'

/** `limits` of `consul()`. */
export interface ConsulLimits {
  /**
   * Largest `/v1/health/service` answer, in bytes, enforced while the body is read: a larger one
   * is aborted at this size, reported as `LimitExceededError`, and the last good set keeps
   * serving. @defaultValue 33_554_432 (32 MiB: about 20,000 entries of 1.6 KB)
   */
  readonly maxResponseBytes?: number
  /** Most entries in one answer; more is refused like an oversized body. @defaultValue 20_000 */
  readonly maxInstances?: number
}

/** `limits` of `etcd()`. */
export interface EtcdLimits {
  /**
   * Largest etcd value read as an instance, in bytes; a larger one is a malformed entry (its key
   * keeps its last good value). @defaultValue 262_144 (256 KiB)
   */
  readonly maxValueBytes?: number
  /** Most keys under one service; a listing or update past it is refused. @defaultValue 20_000 */
  readonly maxInstances?: number
}

export interface ResolvedConsulLimits {
  readonly maxResponseBytes: number
  readonly maxInstances: number
}

export interface ResolvedEtcdLimits {
  readonly maxValueBytes: number
  readonly maxInstances: number
}

export const LIMIT_DEFAULTS = Object.freeze({
  maxResponseBytes: 32 * 1024 * 1024,
  maxInstances: 20_000,
  maxValueBytes: 256 * 1024,
})

/** A body is decoded into one string: V8's longest string bounds any answer we can read. */
const MAX_BODY_BYTES = constants.MAX_STRING_LENGTH

export function resolveConsulLimits(value: unknown): ResolvedConsulLimits {
  const o = limitsObject(value, ['maxResponseBytes', 'maxInstances'])
  return {
    maxResponseBytes: whole(
      'limits.maxResponseBytes',
      o.maxResponseBytes,
      LIMIT_DEFAULTS.maxResponseBytes,
      1_024,
      MAX_BODY_BYTES,
    ),
    maxInstances: whole(
      'limits.maxInstances',
      o.maxInstances,
      LIMIT_DEFAULTS.maxInstances,
      1,
      10_000_000,
    ),
  }
}

export function resolveEtcdLimits(value: unknown): ResolvedEtcdLimits {
  const o = limitsObject(value, ['maxValueBytes', 'maxInstances'])
  return {
    // etcd refuses requests over 1.5 MiB by default (--max-request-bytes): no value is larger.
    maxValueBytes: whole(
      'limits.maxValueBytes',
      o.maxValueBytes,
      LIMIT_DEFAULTS.maxValueBytes,
      64,
      64 * 1024 * 1024,
    ),
    maxInstances: whole(
      'limits.maxInstances',
      o.maxInstances,
      LIMIT_DEFAULTS.maxInstances,
      1,
      10_000_000,
    ),
  }
}

function limitsObject(value: unknown, known: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidOptionError('limits', value, `Pass an object with ${known.join(', ')}.`)
  for (const key of Object.keys(value))
    if (!known.includes(key))
      throw new InvalidOptionError(
        `limits.${key}`,
        (value as Record<string, unknown>)[key],
        `This limit does not exist; known limits are: ${known.join(', ')}.`,
      )
  return value as Record<string, unknown>
}

function whole(option: string, value: unknown, fallback: number, min: number, max: number): number {
  const v = value ?? fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new InvalidOptionError(option, v, `Pass a whole number between ${min} and ${max}.`)
  return v
}
