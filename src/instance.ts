/**
 * The instance model shared by every layer.
 */
import { isIP } from 'node:net'
import { renderValue } from './core/options/redact.js'
import { quote } from './errors.js'

/** Health of an instance as seen by the registry. Critical instances are never returned. */
export type InstanceStatus = 'passing' | 'warning'

/**
 * One reachable instance of a service. Immutable (frozen): built only by the registry mappings
 * through {@link createInstance}.
 */
export interface Instance {
  /** Registry identity within the service: Consul `Service.ID`, the etcd key's last segment. */
  readonly id: string
  /**
   * Unique key of this instance within its service, stable across updates: Consul
   * `Node + "/" + Service.ID`, the full etcd key, the memory registry's id. Load statistics,
   * pools and change diffs are keyed by it.
   */
  readonly key: string
  /** Logical service name. */
  readonly service: string
  /** Host to connect to, already resolved (Consul: `Service.Address || Node.Address`). */
  readonly host: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  /** Relative weight, a positive integer; 1 when the registry gives none. */
  readonly weight: number
  readonly status: InstanceStatus
}

/** Fields accepted by {@link createInstance}; `key`, tags, meta, weight and status have defaults. */
export interface InstanceInit {
  readonly id: string
  readonly key?: string | undefined
  readonly service: string
  readonly host: string
  readonly port: number
  readonly tags?: readonly string[] | undefined
  readonly meta?: Readonly<Record<string, string>> | undefined
  readonly weight?: number | undefined
  readonly status?: InstanceStatus | undefined
}

/**
 * Builds a frozen {@link Instance}. Performs no validation: mappings validate registry data first
 * (see {@link instanceProblem}) and report malformed entries as events.
 */
export function createInstance(init: InstanceInit): Instance {
  return Object.freeze({
    id: init.id,
    key: init.key ?? init.id,
    service: init.service,
    host: init.host,
    port: init.port,
    tags: copyTags(init.tags),
    meta: copyMeta(init.meta),
    weight: init.weight ?? 1,
    status: init.status ?? 'passing',
  })
}

/** Most instances have no tags: they share one frozen empty list. */
const NO_TAGS: readonly string[] = Object.freeze([])

/** A frozen copy (the caller keeps its array, and may change it). */
function copyTags(tags: readonly string[] | undefined): readonly string[] {
  if (tags === undefined || tags.length === 0) return NO_TAGS
  return Object.freeze(tags.slice())
}

/**
 * A frozen copy of the own enumerable string keys, as `{ ...meta }` makes, in a loop: V8's
 * object spread costs several times more on the small objects registries hand us, and every
 * instance of every answer pays it.
 */
function copyMeta(
  meta: Readonly<Record<string, string>> | undefined,
): Readonly<Record<string, string>> {
  const out: Record<string, string> = {}
  if (meta !== undefined)
    for (const k of Object.keys(meta)) {
      const v = meta[k] as string
      // Assigning "__proto__" would set the prototype instead of copying a key (JSON.parse
      // makes it an own property): define it as spread does.
      if (k === '__proto__')
        Object.defineProperty(out, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        })
      else out[k] = v
    }
  return Object.freeze(out)
}

/** Which field of an {@link InstanceInit} is wrong, and why. */
export interface InstanceFault {
  readonly field: 'id' | 'host' | 'port' | 'weight' | 'tags' | 'meta'
  readonly reason: string
}

/**
 * Why `init` cannot be an instance, or undefined when it can. Shared by every mapping so that
 * each registry rejects the same things the same way.
 */
export function instanceFault(init: InstanceInit): InstanceFault | undefined {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- callers pass decoded registry data: check at run time what the types promise */
  if (typeof init.id !== 'string' || init.id === '')
    return { field: 'id', reason: 'the instance id is empty' }
  if (typeof init.host !== 'string' || init.host === '')
    return { field: 'host', reason: 'the address is empty' }
  const hostProblem = hostSyntaxProblem(init.host)
  if (hostProblem !== undefined) return { field: 'host', reason: hostProblem }
  if (!Number.isInteger(init.port) || init.port < 1 || init.port > 65535)
    return {
      field: 'port',
      reason: `the port ${typeof init.port === 'string' ? quote(init.port) : renderValue(init.port)} is not an integer in 1..65535`,
    }
  if (init.weight !== undefined && (!Number.isFinite(init.weight) || init.weight <= 0))
    return {
      field: 'weight',
      reason: `the weight ${renderValue(init.weight)} is not a positive number`,
    }
  // Plain loops, not some()/Object.values(): this runs for every instance of every answer.
  const tags = init.tags
  if (tags !== undefined) {
    if (!Array.isArray(tags)) return { field: 'tags', reason: 'tags are not a list of strings' }
    for (let i = 0; i < tags.length; i++)
      if (typeof tags[i] !== 'string')
        return { field: 'tags', reason: 'tags are not a list of strings' }
  }
  const meta = init.meta
  if (meta !== undefined) {
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta))
      return { field: 'meta', reason: 'meta is not an object' }
    for (const k of Object.keys(meta))
      if (typeof meta[k] !== 'string')
        return { field: 'meta', reason: 'meta values are not all strings' }
  }
  return undefined
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
}

/** Longest DNS name (RFC 1035 §2.3.4: 255 octets on the wire, 253 characters written out). */
export const MAX_HOST_LENGTH = 253

/** Labels of 1..63 letters, digits, `-` or `_` (underscores appear in real host names). */
const DNS_NAME = /^(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?$/

/**
 * Why `host` is neither an IP literal nor a DNS name we can dial, or undefined. A registry can
 * hand us anything: a 1,000,000-character string, or U+FFFD where a raw 0xFF byte was decoded.
 */
export function hostSyntaxProblem(host: string): string | undefined {
  if (isPlainHostName(host)) return undefined
  if (host.length > MAX_HOST_LENGTH)
    return `the address ${quote(host, 64)} is longer than a DNS name (${MAX_HOST_LENGTH} characters)`
  // eslint-disable-next-line no-control-regex -- control characters are what this looks for
  if (/[\u0000-\u001f\u007f-\u009f\uFFFD]/u.test(host))
    return `the address ${quote(host, 64)} contains a control or replacement (U+FFFD) character`
  if (isIP(host) !== 0 || DNS_NAME.test(host)) return undefined
  return `the address ${quote(host, 64)} is not a host name or IP address (a DNS name is letters, digits, "-", "_" and dots; punycode for international names)`
}

/**
 * The common case in one pass, without the three regular expressions: {@link DNS_NAME}'s
 * grammar (which also covers every IPv4 literal) within {@link MAX_HOST_LENGTH}. False sends
 * the host through the full checks, which name the problem (or accept an IPv6 literal).
 */
function isPlainHostName(host: string): boolean {
  const n = host.length
  if (n === 0 || n > MAX_HOST_LENGTH) return false
  let label = 0
  for (let i = 0; i < n; i++) {
    const c = host.charCodeAt(i)
    if (c === 0x2e /* . */) {
      if (label === 0) return false
      label = 0
    } else if (
      (c >= 0x30 && c <= 0x39) || // 0-9
      (c >= 0x61 && c <= 0x7a) || // a-z
      (c >= 0x41 && c <= 0x5a) || // A-Z
      c === 0x2d || // -
      c === 0x5f // _
    ) {
      if (++label > 63) return false
    } else return false
  }
  // label === 0 here: one trailing dot after a label (a fully qualified name), as DNS_NAME allows.
  return true
}

/** {@link instanceFault}'s reason alone. */
export function instanceProblem(init: InstanceInit): string | undefined {
  return instanceFault(init)?.reason
}

/** `host:port`, with IPv6 hosts bracketed: the authority part of an origin. */
export function hostPort(instance: Pick<Instance, 'host' | 'port'>): string {
  return instance.host.includes(':')
    ? `[${instance.host}]:${instance.port}`
    : `${instance.host}:${instance.port}`
}

/** Content equality: two instances with the same key are "the same" when this is true. */
export function sameInstance(a: Instance, b: Instance): boolean {
  if (a === b) return true
  if (
    a.key !== b.key ||
    a.id !== b.id ||
    a.host !== b.host ||
    a.port !== b.port ||
    a.weight !== b.weight ||
    a.status !== b.status ||
    a.tags.length !== b.tags.length
  )
    return false
  for (let i = 0; i < a.tags.length; i++) if (a.tags[i] !== b.tags[i]) return false
  const ak = Object.keys(a.meta)
  if (ak.length !== Object.keys(b.meta).length) return false
  for (const k of ak) if (a.meta[k] !== b.meta[k]) return false
  return true
}

/** Result of {@link diffInstances}. */
export interface InstanceDiff {
  readonly added: readonly Instance[]
  readonly removed: readonly Instance[]
  readonly updated: readonly Instance[]
}

/**
 * What changed between two instance sets, by {@link Instance.key}. O(n). `added` and `updated`
 * follow `after`'s order, `removed` follows `before`'s.
 */
export function diffInstances(
  before: readonly Instance[],
  after: readonly Instance[],
): InstanceDiff {
  // Every registry hands over its sets sorted by key: one merge walk then replaces two maps of
  // every key, which a 5,000-instance service paid on each change.
  if (sortedByKey(before) && sortedByKey(after)) return mergeDiff(before, after)
  const old = new Map<string, Instance>()
  for (const i of before) old.set(i.key, i)
  const added: Instance[] = []
  const updated: Instance[] = []
  for (const i of after) {
    const prev = old.get(i.key)
    if (prev === undefined) added.push(i)
    else {
      if (!sameInstance(prev, i)) updated.push(i)
      old.delete(i.key)
    }
  }
  return { added, removed: [...old.values()], updated }
}

/**
 * Whether `list` is sorted by key with no key twice (strictly increasing, in the order of
 * JavaScript's `<` on strings). Such a list has unique keys by construction.
 */
export function sortedByKey(list: readonly Instance[]): boolean {
  for (let i = 1; i < list.length; i++)
    if (!((list[i - 1] as Instance).key < (list[i] as Instance).key)) return false
  return true
}

/** {@link diffInstances} of two lists that are both {@link sortedByKey}. */
function mergeDiff(before: readonly Instance[], after: readonly Instance[]): InstanceDiff {
  const added: Instance[] = []
  const removed: Instance[] = []
  const updated: Instance[] = []
  let b = 0
  let a = 0
  while (b < before.length && a < after.length) {
    const prev = before[b] as Instance
    const next = after[a] as Instance
    if (prev.key === next.key) {
      if (!sameInstance(prev, next)) updated.push(next)
      b++
      a++
    } else if (prev.key < next.key) {
      removed.push(prev)
      b++
    } else {
      added.push(next)
      a++
    }
  }
  for (; b < before.length; b++) removed.push(before[b] as Instance)
  for (; a < after.length; a++) added.push(after[a] as Instance)
  return { added, removed, updated }
}
