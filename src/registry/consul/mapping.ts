/**
 * Pure mapping of `/v1/health/service/<name>` entries (`ServiceEntry[]`,
 * docs/design/consul.md#response-shapes) to instances. No I/O, no clock: everything here is
 * unit-tested on literal Consul answers.
 */
import { MalformedInstanceError } from '../../errors.js'
import {
  createInstance,
  instanceProblem,
  type Instance,
  type InstanceStatus,
} from '../../instance.js'
import type { ConsulAddressKind } from './options.js'

/** How entries become instances. */
export interface MappingOptions {
  readonly service: string
  /** Drop every entry with a check that is not passing (the server should already have). */
  readonly passingOnly: boolean
  readonly addressKind: ConsulAddressKind
}

/** Usable instances (sorted by key) and the entries that were skipped as malformed. */
export interface MappingResult {
  readonly instances: readonly Instance[]
  readonly problems: readonly MalformedInstanceError[]
}

type Json = Record<string, unknown>

/**
 * Maps a parsed answer. Critical instances (and, with `passingOnly`, warning ones) are left out
 * silently: that is health, not malformed data. Anything unreadable becomes a
 * `MalformedInstanceError` and the other entries are kept.
 */
export function mapHealthEntries(
  entries: readonly unknown[],
  options: MappingOptions,
): MappingResult {
  const instances: Instance[] = []
  const problems: MalformedInstanceError[] = []
  const seen = new Set<string>()
  entries.forEach((entry, index) => {
    const result = mapEntry(entry, index, options)
    if (result === undefined) return
    if (result instanceof MalformedInstanceError) {
      problems.push(result)
      return
    }
    if (seen.has(result.key)) {
      problems.push(
        new MalformedInstanceError(
          result.key,
          'the answer lists this node/service ID twice; the first entry is kept',
        ),
      )
      return
    }
    seen.add(result.key)
    instances.push(result)
  })
  // Consul's ?passing filter reorders entries in place (health_endpoint.go), so order carries
  // no meaning; sorting makes equal sets compare equal.
  instances.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  return { instances, problems }
}

function mapEntry(
  entry: unknown,
  index: number,
  options: MappingOptions,
): Instance | MalformedInstanceError | undefined {
  if (!isObject(entry)) return new MalformedInstanceError(`#${index}`, 'the entry is not an object')
  const node = entry.Node
  const service = entry.Service
  const nodeName = isObject(node) && typeof node.Node === 'string' ? node.Node : ''
  const serviceId = isObject(service) && typeof service.ID === 'string' ? service.ID : ''
  const key = `${nodeName === '' ? `#${index}` : nodeName}/${serviceId === '' ? `#${index}` : serviceId}`
  if (!isObject(node)) return new MalformedInstanceError(key, 'the entry has no Node object')
  if (!isObject(service)) return new MalformedInstanceError(key, 'the entry has no Service object')
  if (nodeName === '') return new MalformedInstanceError(key, 'Node.Node is empty')
  if (serviceId === '') return new MalformedInstanceError(key, 'Service.ID is empty')

  const status = aggregateStatus(entry.Checks)
  if (typeof status === 'object') return new MalformedInstanceError(key, status.problem)
  if (status === 'critical') return undefined
  if (status === 'warning' && options.passingOnly) return undefined

  const address = pickAddress(node, service, options.addressKind)
  if (typeof address === 'string') return new MalformedInstanceError(key, address)

  const weights = service.Weights
  let weight: unknown = 1
  if (weights !== undefined && weights !== null) {
    if (!isObject(weights))
      return new MalformedInstanceError(key, 'Service.Weights is not an object')
    weight = status === 'passing' ? (weights.Passing ?? 1) : (weights.Warning ?? 1)
    // Consul allows a warning weight of 0: "send no traffic while warning". That is a choice,
    // not malformed data.
    if (status === 'warning' && weight === 0) return undefined
  }

  const init = {
    id: serviceId,
    key: `${nodeName}/${serviceId}`,
    service: options.service,
    host: address.host,
    port: address.port as number,
    // Consul normalises nil slices and maps to []/{} in this endpoint; accept null anyway.
    tags: (service.Tags ?? []) as readonly string[],
    meta: (service.Meta ?? {}) as Readonly<Record<string, string>>,
    weight: weight as number,
    status,
  }
  const problem = instanceProblem(init)
  if (problem !== undefined) return new MalformedInstanceError(init.key, problem)
  if (!Number.isInteger(init.weight))
    return new MalformedInstanceError(
      init.key,
      `the weight ${String(init.weight)} is not a whole number`,
    )
  return createInstance(init)
}

/** Worst status over the node's and the service's checks (every check counts, as with ?passing). */
function aggregateStatus(checks: unknown): InstanceStatus | 'critical' | { problem: string } {
  if (checks === undefined || checks === null) return 'passing'
  if (!Array.isArray(checks)) return { problem: 'Checks is not an array' }
  let worst: InstanceStatus | 'critical' = 'passing'
  for (const check of checks) {
    const status = isObject(check) ? check.Status : undefined
    if (status === 'critical') return 'critical'
    if (status === 'warning') worst = 'warning'
    else if (status !== 'passing')
      return {
        problem: `a check has the unknown status ${status === undefined ? 'undefined' : JSON.stringify(status)}`,
      }
  }
  return worst
}

/**
 * `Service.Address || Node.Address` (docs/design/consul.md#service-address). A tagged kind
 * follows the agent's own WAN translation order (hashicorp/consul agent/translate_addr.go): the
 * service's tagged address, else the service's own address, else the node's tagged address, else
 * the node's address.
 */
function pickAddress(
  node: Json,
  service: Json,
  kind: ConsulAddressKind,
): { host: string; port: unknown } | string {
  const port: unknown = service.Port
  if (kind !== 'default') {
    const tagged = service.TaggedAddresses
    if (isObject(tagged) && tagged[kind] !== undefined) {
      const t = tagged[kind]
      if (!isObject(t)) return `Service.TaggedAddresses.${kind} is not an object`
      // Real agents write {Address, Port}; the docs' samples write lowercase
      // (docs/design/consul.md#response-shapes).
      const host = t.Address ?? t.address
      const taggedPort = t.Port ?? t.port
      if (typeof host === 'string' && host !== '')
        return { host, port: taggedPort === undefined || taggedPort === 0 ? port : taggedPort }
    }
  }
  const serviceAddress = service.Address
  if (serviceAddress !== undefined && serviceAddress !== null && typeof serviceAddress !== 'string')
    return 'Service.Address is not a string'
  if (typeof serviceAddress === 'string' && serviceAddress !== '')
    return { host: serviceAddress, port }
  if (kind !== 'default') {
    const nodeTagged = node.TaggedAddresses
    if (isObject(nodeTagged) && typeof nodeTagged[kind] === 'string' && nodeTagged[kind] !== '')
      return { host: nodeTagged[kind], port }
  }
  const nodeAddress = node.Address
  if (typeof nodeAddress !== 'string')
    return 'Service.Address is empty and Node.Address is not a string'
  return { host: nodeAddress, port }
}

/**
 * A string that is equal for two instance lists exactly when their content is (lists sorted by
 * key, as {@link mapHealthEntries} returns them). Used to skip index-only bumps.
 */
export function instancesFingerprint(instances: readonly Instance[]): string {
  return JSON.stringify(
    instances.map((i) => [
      i.key,
      i.id,
      i.host,
      i.port,
      i.weight,
      i.status,
      i.tags,
      Object.entries(i.meta).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    ]),
  )
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
