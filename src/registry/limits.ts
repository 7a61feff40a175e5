/**
 * Bounds on what a registry may hand us, as provider options (`consul({ limits })`,
 * `etcd({ limits })`). One place for the defaults, their reasons and their schema blocks, so
 * every provider reads the same names. The reasoning behind each number is in
 * docs/registry-answers.md.
 */
import { constants } from 'node:buffer'
import { integer, object, type Opt, type SchemaFor } from '../core/options/schema.js'

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

/** Parsed {@link ConsulLimits}: every limit present. */
export interface ResolvedConsulLimits {
  readonly maxResponseBytes: number
  readonly maxInstances: number
}

/** Parsed {@link EtcdLimits}: every limit present. */
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

/** The `limits` block of `consul()`'s schema. Unknown keys are refused like any option. */
export const consulLimits: Opt<ResolvedConsulLimits> = object({
  maxResponseBytes: integer(1_024, MAX_BODY_BYTES).default(LIMIT_DEFAULTS.maxResponseBytes),
  maxInstances: integer(1, 10_000_000).default(LIMIT_DEFAULTS.maxInstances),
} satisfies SchemaFor<ConsulLimits>).default({})

/** The `limits` block of `etcd()`'s schema. */
export const etcdLimits: Opt<ResolvedEtcdLimits> = object({
  // etcd refuses requests over 1.5 MiB by default (--max-request-bytes): no value is larger.
  maxValueBytes: integer(64, 64 * 1024 * 1024).default(LIMIT_DEFAULTS.maxValueBytes),
  maxInstances: integer(1, 10_000_000).default(LIMIT_DEFAULTS.maxInstances),
} satisfies SchemaFor<EtcdLimits>).default({})
