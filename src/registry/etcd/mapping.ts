/**
 * Pure mapping from an etcd key/value to an {@link Instance}. The default codec reads the layouts
 * of docs/design/etcd.md#value-formats by their shape:
 *
 * | value                                                   | layout                       | id                     |
 * |---------------------------------------------------------|------------------------------|------------------------|
 * | `{"id","name","address","port","tags","meta","weight"}` | wayfind's registrar          | `id`, else key suffix  |
 * | `{"Op":0,"Addr":"host:port","Metadata":…}`              | Go etcd naming (endpoints)   | key suffix             |
 * | `{"id","name","endpoints":["http://h:p", …],…}`         | Kratos ServiceInstance       | `id`, else key suffix  |
 * | `{"name","nodes":[{"id","address","metadata"}],…}`      | go-micro Service (one node)  | node `id`              |
 * | `host:port` (also `[v6]:port`, `http://host:port`)      | plain (go-zero, hand-written) | key suffix            |
 *
 * Kratos rule: the first endpoint whose scheme is `http` wins (wayfind speaks HTTP/1.1 to
 * instances); an instance that only offers `grpc://` or `https://` endpoints is reported as
 * malformed rather than silently called over the wrong protocol.
 */
import { isUtf8 } from 'node:buffer'
import { quote } from '../../errors.js'
import {
  createInstance,
  instanceProblem,
  type Instance,
  type InstanceInit,
} from '../../instance.js'

/** One etcd entry, as handed to a codec. */
export interface EtcdEntry {
  /** The full etcd key (UTF-8). */
  readonly key: string
  /** The service being watched (the key sits under `<prefix><service>/`). */
  readonly service: string
  /** The last key segment: the default instance id. */
  readonly keySuffix: string
  /** The raw value bytes. */
  readonly value: Uint8Array
}

/** What a codec extracts from a value; `key` and `service` are set by wayfind. */
export type DecodedInstance = Omit<InstanceInit, 'key' | 'service'>

/**
 * Turns an etcd value into instance fields. Pluggable through `etcd({ codec })`.
 *
 * `decode` returns the fields, or `undefined` when the entry is deliberately not an instance
 * (it is then ignored without an error). It throws (any Error) when the value is malformed:
 * wayfind reports a `MalformedInstanceError` naming the key with the thrown message, and keeps
 * serving the key's last good value. Must be pure and synchronous.
 */
export interface EtcdCodec {
  readonly name: string
  decode(entry: EtcdEntry): DecodedInstance | undefined
}

/** Result of {@link decodeEntry}. */
export type DecodeResult =
  | { readonly kind: 'instance'; readonly instance: Instance }
  | { readonly kind: 'ignored' }
  | { readonly kind: 'malformed'; readonly reason: string }

/**
 * Runs `codec` on one entry and validates the result with the shared instance rules. A value
 * over `maxValueBytes` is malformed without being decoded.
 */
export function decodeEntry(
  codec: EtcdCodec,
  entry: EtcdEntry,
  maxValueBytes = Infinity,
): DecodeResult {
  if (entry.value.length > maxValueBytes)
    return {
      kind: 'malformed',
      reason: `the value is ${entry.value.length} bytes, over limits.maxValueBytes (${maxValueBytes})`,
    }
  let decoded: DecodedInstance | undefined
  try {
    decoded = codec.decode(entry)
  } catch (err) {
    // A custom codec may quote the whole value: the reason is cut like any quoted value.
    const message = err instanceof Error ? err.message : String(err)
    return {
      kind: 'malformed',
      reason:
        message.length > 300 ? `${message.slice(0, 300)}… (${message.length} chars)` : message,
    }
  }
  if (decoded === undefined) return { kind: 'ignored' }
  // Named fields, not a spread of `decoded`: cheaper per entry, and nothing else is read.
  const init: InstanceInit = {
    id: decoded.id,
    key: entry.key,
    service: entry.service,
    host: decoded.host,
    port: decoded.port,
    tags: decoded.tags,
    meta: decoded.meta,
    weight: decoded.weight,
    status: decoded.status,
  }
  const problem = instanceProblem(init)
  if (problem !== undefined) return { kind: 'malformed', reason: problem }
  return { kind: 'instance', instance: createInstance(init) }
}

/**
 * The value as UTF-8 text; throws on invalid UTF-8 (never a U+FFFD in an address). Decoding
 * replaces every invalid sequence with U+FFFD, so text without one came from valid UTF-8; only
 * text with one (a replacement, or a U+FFFD the value really holds) is checked byte by byte.
 * For the usual ASCII values that check is free: V8 knows at once that a one-byte string holds
 * no U+FFFD, so valid values are read in one pass instead of two.
 */
function utf8Text(bytes: Uint8Array): string {
  // etcd3 hands over Buffers: decode them in place rather than through a new view.
  const buffer =
    bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const text = buffer.toString('utf8')
  if (text.includes('\uFFFD') && !isUtf8(bytes)) throw new TypeError('invalid UTF-8')
  return text
}

/** The default codec: every layout of the table above, recognised by shape. */
export const defaultEtcdCodec: EtcdCodec = Object.freeze({
  name: 'auto',
  decode(entry: EtcdEntry): DecodedInstance | undefined {
    let text: string
    try {
      text = utf8Text(entry.value).trim()
    } catch {
      throw new Error('the value is not UTF-8 text')
    }
    if (text === '') throw new Error('the value is empty')
    if (!text.startsWith('{')) return { ...parseHostPort(text), id: entry.keySuffix }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new Error('the value starts with "{" but is not valid JSON')
    }
    if (!isObject(json)) throw new Error('the JSON value is not an object')
    if ('Addr' in json) return decodeEtcdNaming(json, entry)
    if (Array.isArray(json.nodes)) return decodeGoMicro(json, entry)
    if (Array.isArray(json.endpoints)) return decodeKratos(json, entry)
    return decodeWayfind(json, entry)
  },
})

/** wayfind's own value: what `register()` writes. */
function decodeWayfind(json: Record<string, unknown>, entry: EtcdEntry): DecodedInstance {
  checkName(json.name, entry)
  const id = optionalString(json.id, 'id') ?? entry.keySuffix
  const address = json.address
  if (typeof address !== 'string') throw new Error('"address" is missing or not a string')
  const port = json.port
  if (typeof port !== 'number') throw new Error('"port" is missing or not a number')
  const out: { -readonly [K in keyof DecodedInstance]: DecodedInstance[K] } = {
    id,
    host: address,
    port,
  }
  if (json.tags !== undefined && json.tags !== null) out.tags = json.tags as readonly string[]
  if (json.meta !== undefined && json.meta !== null) out.meta = json.meta as Record<string, string>
  if (json.weight !== undefined && json.weight !== null) {
    if (typeof json.weight !== 'number' || !Number.isInteger(json.weight))
      throw new Error(
        `"weight" ${JSON.stringify(json.weight).slice(0, 100)} is not a positive integer`,
      )
    out.weight = json.weight
  }
  return out
}

/**
 * Go `go.etcd.io/etcd/client/v3/naming/endpoints`: the stored value is the JSON of
 * `Update{Op, Addr, Metadata}` with no json tags. Readers use only Addr and Metadata
 * (endpoints_impl.go), so Op is not interpreted; the key suffix is the id.
 */
function decodeEtcdNaming(json: Record<string, unknown>, entry: EtcdEntry): DecodedInstance {
  if (typeof json.Addr !== 'string') throw new Error('"Addr" is not a string')
  return { ...parseHostPort(json.Addr), id: entry.keySuffix, meta: metadataToMeta(json.Metadata) }
}

/** go-kratos `registry.ServiceInstance` (contrib/registry/etcd). */
function decodeKratos(json: Record<string, unknown>, entry: EtcdEntry): DecodedInstance {
  checkName(json.name, entry)
  const id = optionalString(json.id, 'id') ?? entry.keySuffix
  const endpoints = json.endpoints as unknown[]
  let chosen: { host: string; port: number } | undefined
  for (const e of endpoints) {
    if (typeof e !== 'string') throw new Error('"endpoints" holds a value that is not a string')
    if (chosen === undefined && e.startsWith('http://')) chosen = parseHostPort(e)
  }
  if (chosen === undefined)
    throw new Error(
      `no http:// endpoint among ${JSON.stringify(endpoints).slice(0, 120)} (wayfind calls instances over HTTP)`,
    )
  const meta: Record<string, string> = { ...metadataToMeta(json.metadata) }
  if (typeof json.version === 'string' && json.version !== '' && meta.version === undefined)
    meta.version = json.version
  return { ...chosen, id, meta }
}

/** go-micro `registry.Service` holding one node (registry/etcd writes one key per node). */
function decodeGoMicro(json: Record<string, unknown>, entry: EtcdEntry): DecodedInstance {
  checkName(json.name, entry)
  const nodes = json.nodes as unknown[]
  const node = nodes[0]
  if (nodes.length !== 1 || !isObject(node))
    throw new Error(`expected exactly one node, got ${String(nodes.length)}`)
  if (typeof node.address !== 'string') throw new Error('the node "address" is not a string')
  const id = optionalString(node.id, 'nodes[0].id') ?? entry.keySuffix
  const meta: Record<string, string> = { ...metadataToMeta(node.metadata) }
  if (typeof json.version === 'string' && json.version !== '' && meta.version === undefined)
    meta.version = json.version
  return { ...parseHostPort(node.address), id, meta }
}

/** `host:port`, `[v6]:port`, optionally behind `http://` (and a path or query we ignore). */
export function parseHostPort(text: string): { host: string; port: number } {
  let s = text.trim()
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s)
  if (scheme !== null) {
    if (scheme[1]?.toLowerCase() !== 'http')
      throw new Error(`the address ${quote(text)} is not http://`)
    s = s.slice(scheme[0].length)
  }
  s = s.replace(/[/?#].*$/s, '')
  let host: string
  let portText: string
  if (s.startsWith('[')) {
    const end = s.indexOf(']')
    if (end < 0 || s[end + 1] !== ':')
      throw new Error(`the address ${quote(text)} is not [ipv6]:port`)
    host = s.slice(1, end)
    portText = s.slice(end + 2)
  } else {
    const colon = s.lastIndexOf(':')
    if (colon < 0) throw new Error(`the address ${quote(text)} has no port (expected host:port)`)
    host = s.slice(0, colon)
    portText = s.slice(colon + 1)
    if (host.includes(':'))
      throw new Error(`the address ${quote(text)} is an unbracketed IPv6 address`)
  }
  if (!/^\d{1,5}$/.test(portText)) throw new Error(`the address ${quote(text)} has no numeric port`)
  if (host === '') throw new Error(`the address ${quote(text)} has no host`)
  return { host, port: Number(portText) }
}

/** Go metadata is arbitrary JSON: keep string maps as they are, render anything else as one value. */
function metadataToMeta(metadata: unknown): Record<string, string> {
  if (metadata === undefined || metadata === null) return {}
  if (typeof metadata === 'string') return metadata === '' ? {} : { metadata }
  if (isObject(metadata)) {
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(metadata))
      out[k] = typeof v === 'string' ? v : JSON.stringify(v)
    return out
  }
  return { metadata: JSON.stringify(metadata) }
}

function checkName(name: unknown, entry: EtcdEntry): void {
  if (name === undefined || name === null) return
  if (typeof name !== 'string') throw new Error('"name" is not a string')
  if (name !== entry.service)
    throw new Error(
      `the value names service ${quote(name)} but the key is under ${quote(entry.service)}`,
    )
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw new Error(`"${field}" is not a string`)
  return v
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The value wayfind's registrar writes (docs/design/etcd.md#wayfinds-own-value). */
export function encodeRegistration(reg: {
  readonly id: string
  readonly name: string
  readonly address: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly weight: number
}): string {
  return JSON.stringify({
    id: reg.id,
    name: reg.name,
    address: reg.address,
    port: reg.port,
    tags: reg.tags,
    meta: reg.meta,
    weight: reg.weight,
  })
}
