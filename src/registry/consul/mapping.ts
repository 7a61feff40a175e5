/**
 * Pure mapping of `/v1/health/service/<name>` entries (`ServiceEntry[]`,
 * docs/design/consul.md#response-shapes) to instances. No I/O, no clock: everything here is
 * unit-tested on literal Consul answers.
 */
import { quote } from '../../errors.js'
import {
  createInstance,
  instanceFault,
  type Instance,
  type InstanceInit,
  type InstanceStatus,
} from '../../instance.js'
import type { EntryFault } from '../answer-policy.js'
import type { ConsulAddressKind } from './options.js'

/** How entries become instances. */
export interface MappingOptions {
  readonly service: string
  /** Drop every entry with a check that is not passing (the server should already have). */
  readonly passingOnly: boolean
  readonly addressKind: ConsulAddressKind
}

/** Usable instances (sorted by key) and the entries that could not be read. */
export interface MappingResult {
  readonly instances: readonly Instance[]
  readonly problems: readonly EntryFault[]
}

type Json = Record<string, unknown>

/** Where an entry's address came from, so a bad host names the right field. */
interface PickedAddress {
  readonly host: unknown
  readonly hostField: string
  readonly port: unknown
  readonly portField: string
}

/**
 * Maps a parsed answer. Critical instances (and, with `passingOnly`, warning ones) are left out
 * silently: that is health, not malformed data. Anything unreadable becomes an
 * {@link EntryFault} naming the entry and the field, and the other entries are kept.
 */
export function mapHealthEntries(
  entries: readonly unknown[],
  options: MappingOptions,
): MappingResult {
  const instances: Instance[] = []
  const problems: EntryFault[] = []
  const seen = new Set<string>()
  for (let index = 0; index < entries.length; index++) {
    const result = mapEntry(entries[index], index, options)
    if (result === undefined) continue
    if (!('host' in result)) {
      problems.push(result)
      continue
    }
    if (seen.has(result.key)) {
      problems.push({
        entry: result.key,
        key: undefined,
        field: 'Node.Node/Service.ID',
        reason: 'the answer lists this node/service ID twice; the first entry is kept',
      })
      continue
    }
    seen.add(result.key)
    instances.push(result)
  }
  // Consul's ?passing filter reorders entries in place (health_endpoint.go), so order carries
  // no meaning; sorting makes equal sets compare equal.
  instances.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  return { instances, problems }
}

function mapEntry(
  entry: unknown,
  index: number,
  options: MappingOptions,
): Instance | EntryFault | undefined {
  if (!isObject(entry))
    return {
      entry: `#${index}`,
      key: undefined,
      field: '(entry)',
      reason: `the entry is ${entry === null ? 'null' : 'not an object'}`,
    }
  const node = entry.Node
  const service = entry.Service
  const nodeName = isObject(node) && typeof node.Node === 'string' ? node.Node : ''
  const serviceId = isObject(service) && typeof service.ID === 'string' ? service.ID : ''
  const named = nodeName !== '' && serviceId !== ''
  // Only an entry that names both node and service ID can be matched with its last good value.
  const key = named ? `${nodeName}/${serviceId}` : undefined
  const result = readEntry(entry, node, service, nodeName, serviceId, key, options)
  if (result === undefined || 'host' in result) return result
  // The entry's name is only spelled out for a fault: a clean entry builds no string for it.
  return {
    entry: `${nodeName === '' ? `#${index}` : nodeName}/${serviceId === '' ? `#${index}` : serviceId}`,
    key,
    field: result.field,
    reason: result.reason,
  }
}

/** What is wrong with an entry, before it is named. */
interface Problem {
  readonly field: string
  readonly reason: string
}

/**
 * The entry as an instance, undefined when its health leaves it out, or what is wrong with it.
 * Returns plain `{ field, reason }` objects, not closures: thousands of entries per answer pass
 * through here for a large service.
 */
function readEntry(
  entry: Json,
  node: unknown,
  service: unknown,
  nodeName: string,
  serviceId: string,
  key: string | undefined,
  options: MappingOptions,
): Instance | Problem | undefined {
  if (!isObject(node)) return { field: 'Node', reason: 'the entry has no Node object' }
  if (!isObject(service)) return { field: 'Service', reason: 'the entry has no Service object' }
  if (nodeName === '') return { field: 'Node.Node', reason: 'is empty or not a string' }
  if (serviceId === '') return { field: 'Service.ID', reason: 'is empty or not a string' }

  const status = aggregateStatus(entry.Checks)
  if (typeof status === 'object') return { field: 'Checks', reason: status.problem }
  if (status === 'critical') return undefined
  if (status === 'warning' && options.passingOnly) return undefined

  const address = pickAddress(node, service, options.addressKind)
  if ('field' in address) return { field: address.field, reason: address.problem }

  const weights = service.Weights
  let weight: unknown = 1
  const weightField = status === 'passing' ? 'Service.Weights.Passing' : 'Service.Weights.Warning'
  if (weights !== undefined && weights !== null) {
    if (!isObject(weights)) return { field: 'Service.Weights', reason: 'is not an object' }
    weight = status === 'passing' ? (weights.Passing ?? 1) : (weights.Warning ?? 1)
    // Consul allows a warning weight of 0: "send no traffic while warning". That is a choice,
    // not malformed data.
    if (status === 'warning' && weight === 0) return undefined
  }

  const init = {
    id: serviceId,
    key,
    service: options.service,
    host: address.host,
    port: address.port,
    // Consul normalises nil slices and maps to []/{} in this endpoint; accept null anyway.
    tags: service.Tags ?? [],
    meta: service.Meta ?? {},
    weight,
    status,
  } as InstanceInit
  const problem = instanceFault(init)
  if (problem !== undefined) {
    const field = {
      id: 'Service.ID',
      host: address.hostField,
      port: address.portField,
      weight: weightField,
      tags: 'Service.Tags',
      meta: 'Service.Meta',
    }[problem.field]
    return { field, reason: problem.reason }
  }
  if (!Number.isInteger(init.weight))
    return { field: weightField, reason: `the weight ${String(init.weight)} is not a whole number` }
  return createInstance(init)
}

/** Worst status over the node's and the service's checks (every check counts, as with ?passing). */
function aggregateStatus(checks: unknown): InstanceStatus | 'critical' | { problem: string } {
  if (checks === undefined || checks === null) return 'passing'
  if (!Array.isArray(checks)) return { problem: 'is not an array' }
  let worst: InstanceStatus | 'critical' = 'passing'
  for (const check of checks) {
    const status = isObject(check) ? check.Status : undefined
    if (status === 'critical') return 'critical'
    if (status === 'warning') worst = 'warning'
    else if (status !== 'passing')
      return {
        problem: `a check has the unknown status ${status === undefined ? 'undefined' : typeof status === 'string' ? quote(status) : JSON.stringify(status).slice(0, 100)}`,
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
): PickedAddress | { field: string; problem: string } {
  const port: unknown = service.Port
  if (kind !== 'default') {
    const tagged = service.TaggedAddresses
    if (isObject(tagged) && tagged[kind] !== undefined) {
      const t = tagged[kind]
      const field = `Service.TaggedAddresses.${kind}`
      if (!isObject(t)) return { field, problem: 'is not an object' }
      // Real agents write {Address, Port}; the docs' samples write lowercase
      // (docs/design/consul.md#response-shapes).
      const host = t.Address ?? t.address
      const taggedPort = t.Port ?? t.port
      if (typeof host === 'string' && host !== '') {
        const own = taggedPort === undefined || taggedPort === 0
        return {
          host,
          hostField: `${field}.Address`,
          port: own ? port : taggedPort,
          portField: own ? 'Service.Port' : `${field}.Port`,
        }
      }
    }
  }
  const serviceAddress = service.Address
  if (serviceAddress !== undefined && serviceAddress !== null && typeof serviceAddress !== 'string')
    return { field: 'Service.Address', problem: 'is not a string' }
  if (typeof serviceAddress === 'string' && serviceAddress !== '')
    return { host: serviceAddress, hostField: 'Service.Address', port, portField: 'Service.Port' }
  if (kind !== 'default') {
    const nodeTagged = node.TaggedAddresses
    if (isObject(nodeTagged) && typeof nodeTagged[kind] === 'string' && nodeTagged[kind] !== '')
      return {
        host: nodeTagged[kind],
        hostField: `Node.TaggedAddresses.${kind}`,
        port,
        portField: 'Service.Port',
      }
  }
  const nodeAddress = node.Address
  if (typeof nodeAddress !== 'string')
    return { field: 'Node.Address', problem: 'Service.Address is empty and this is not a string' }
  return { host: nodeAddress, hostField: 'Node.Address', port, portField: 'Service.Port' }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
