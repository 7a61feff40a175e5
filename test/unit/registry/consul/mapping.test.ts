import { describe, expect, it } from 'vitest'
import { sameInstance, type Instance } from '../../../../src/instance.js'
import { mapHealthEntries, type MappingOptions } from '../../../../src/registry/consul/mapping.js'

const OPTS: MappingOptions = { service: 'orders', passingOnly: false, addressKind: 'default' }

interface EntryInit {
  node?: string
  nodeAddress?: string
  id?: string
  address?: string
  port?: unknown
  tags?: unknown
  meta?: unknown
  weights?: unknown
  statuses?: string[]
  serviceTagged?: Record<string, unknown>
  nodeTagged?: Record<string, string>
}

/** A ServiceEntry shaped like a real agent's answer (docs/design/consul.md#response-shapes). */
function entry(init: EntryInit = {}): Record<string, unknown> {
  const node = init.node ?? 'ip-10-20-3-17'
  const id = init.id ?? 'orders-7f9c'
  return {
    Node: {
      ID: 'b1f0c9de-3a52-4e6b-9d1c-2f7a0e5b8c41',
      Node: node,
      Address: init.nodeAddress ?? '10.20.3.17',
      Datacenter: 'dc1',
      TaggedAddresses: init.nodeTagged ?? { lan: '10.20.3.17', wan: '198.51.100.7' },
      Meta: {},
      CreateIndex: 1,
      ModifyIndex: 1,
    },
    Service: {
      ID: id,
      Service: 'orders',
      Tags: init.tags ?? ['v2'],
      Address: init.address ?? '',
      Meta: init.meta ?? { version: '2.4.1' },
      Port: init.port ?? 7443,
      Weights: init.weights ?? { Passing: 5, Warning: 1 },
      EnableTagOverride: false,
      ...(init.serviceTagged === undefined ? {} : { TaggedAddresses: init.serviceTagged }),
      Proxy: { MeshGateway: {}, Expose: {} },
      Connect: {},
      CreateIndex: 2,
      ModifyIndex: 2,
    },
    Checks: (init.statuses ?? ['passing', 'passing']).map((Status, n) => ({
      Node: node,
      CheckID: n === 0 ? 'serfHealth' : `service:${id}`,
      Name: 'c',
      Status,
      Notes: '',
      Output: '',
      ServiceID: n === 0 ? '' : id,
      ServiceName: n === 0 ? '' : 'orders',
      ServiceTags: [],
      Type: '',
      Definition: {},
      CreateIndex: 1,
      ModifyIndex: 1,
    })),
  }
}

describe('mapHealthEntries', () => {
  it('falls back to Node.Address when Service.Address is empty, and keys by node/ID', () => {
    const { instances, problems } = mapHealthEntries([entry()], OPTS)
    expect(problems).toEqual([])
    expect(instances).toHaveLength(1)
    expect(instances[0]).toMatchObject({
      id: 'orders-7f9c',
      key: 'ip-10-20-3-17/orders-7f9c',
      service: 'orders',
      host: '10.20.3.17',
      port: 7443,
      tags: ['v2'],
      meta: { version: '2.4.1' },
      weight: 5,
      status: 'passing',
    })
    expect(Object.isFrozen(instances[0])).toBe(true)
  })

  it('prefers Service.Address over Node.Address', () => {
    const { instances } = mapHealthEntries([entry({ address: '172.18.0.5' })], OPTS)
    expect(instances[0]?.host).toBe('172.18.0.5')
  })

  it('keeps the same service ID on two nodes apart', () => {
    const { instances } = mapHealthEntries([entry({ node: 'b' }), entry({ node: 'a' })], OPTS)
    expect(instances.map((i) => i.key)).toEqual(['a/orders-7f9c', 'b/orders-7f9c'])
  })

  it('drops critical instances and keeps warning ones with their warning weight', () => {
    const { instances, problems } = mapHealthEntries(
      [
        entry({ id: 'ok', statuses: ['passing', 'passing'] }),
        entry({
          id: 'warn',
          statuses: ['passing', 'warning'],
          weights: { Passing: 10, Warning: 3 },
        }),
        entry({ id: 'crit', statuses: ['passing', 'critical'] }),
        entry({ id: 'node-down', statuses: ['critical', 'passing'] }),
      ],
      OPTS,
    )
    expect(problems).toEqual([])
    expect(instances.map((i) => [i.id, i.status, i.weight])).toEqual([
      ['ok', 'passing', 5],
      ['warn', 'warning', 3],
    ])
  })

  it('with passingOnly also drops warning instances (defensive: the server filters too)', () => {
    const { instances } = mapHealthEntries(
      [entry({ id: 'ok' }), entry({ id: 'warn', statuses: ['warning'] })],
      { ...OPTS, passingOnly: true },
    )
    expect(instances.map((i) => i.id)).toEqual(['ok'])
  })

  it('treats a warning weight of 0 as "no traffic while warning", not as malformed', () => {
    const { instances, problems } = mapHealthEntries(
      [entry({ statuses: ['warning'], weights: { Passing: 1, Warning: 0 } })],
      OPTS,
    )
    expect(instances).toEqual([])
    expect(problems).toEqual([])
  })

  it('defaults weights to 1 and tolerates null tags, meta and checks', () => {
    const e = entry()
    const service = e.Service as Record<string, unknown>
    delete service.Weights
    service.Tags = null
    service.Meta = null
    e.Checks = null
    const { instances, problems } = mapHealthEntries([e], OPTS)
    expect(problems).toEqual([])
    expect(instances[0]).toMatchObject({ weight: 1, tags: [], meta: {} })
  })

  it('skips malformed entries with MALFORMED_INSTANCE and keeps the others', () => {
    const { instances, problems } = mapHealthEntries(
      [
        entry({ id: 'good' }),
        entry({ id: 'bad-port', port: 0 }),
        entry({ id: 'bad-port-type', port: '80' }),
        entry({ id: 'no-address', nodeAddress: '' }),
        entry({ id: 'bad-tags', tags: [1] }),
        entry({ id: 'bad-meta', meta: { a: 1 } }),
        entry({ id: 'bad-weight', weights: { Passing: -1, Warning: 1 } }),
        entry({ id: 'odd-status', statuses: ['maintenance'] }),
        'not an object',
        { Node: { Node: 'n' } },
        { Node: { Node: 'n', Address: '10.0.0.1' }, Service: { ID: '', Port: 1 } },
      ],
      OPTS,
    )
    expect(instances.map((i) => i.id)).toEqual(['good'])
    expect(problems).toHaveLength(10)
    expect(problems.map((p) => p.entry)).toEqual([
      'ip-10-20-3-17/bad-port',
      'ip-10-20-3-17/bad-port-type',
      'ip-10-20-3-17/no-address',
      'ip-10-20-3-17/bad-tags',
      'ip-10-20-3-17/bad-meta',
      'ip-10-20-3-17/bad-weight',
      'ip-10-20-3-17/odd-status',
      '#8',
      'n/#9',
      'n/#10',
    ])
    expect(problems.map((p) => p.field)).toEqual([
      'Service.Port',
      'Service.Port',
      'Node.Address',
      'Service.Tags',
      'Service.Meta',
      'Service.Weights.Passing',
      'Checks',
      '(entry)',
      'Service',
      'Service.ID',
    ])
    // Entries that name node and service ID carry the key their last good value is kept under.
    expect(problems[0]?.key).toBe('ip-10-20-3-17/bad-port')
    expect(problems[7]?.key).toBeUndefined()
    expect(problems[0]?.reason).toMatch(/port 0/)
    expect(problems[1]?.reason).toMatch(/port "80"/)
    expect(problems[6]?.reason).toMatch(/unknown status "maintenance"/)
  })

  it('refuses hosts no one can dial: 1,000,000 characters, U+FFFD, control characters', () => {
    const { instances, problems } = mapHealthEntries(
      [
        entry({ id: 'long', address: 'h'.repeat(1_000_000) }),
        entry({ id: 'fffd', address: '10.0.0.\uFFFD' }),
        entry({ id: 'ctl', nodeAddress: 'node\u0000x' }),
        entry({ id: 'ok', address: 'payments-1.internal' }),
      ],
      OPTS,
    )
    expect(instances.map((i) => i.id)).toEqual(['ok'])
    expect(problems.map((p) => [p.entry, p.field])).toEqual([
      ['ip-10-20-3-17/long', 'Service.Address'],
      ['ip-10-20-3-17/fffd', 'Service.Address'],
      ['ip-10-20-3-17/ctl', 'Node.Address'],
    ])
    expect(problems[0]?.reason).toMatch(/longer than a DNS name \(253/)
    expect(problems[0]?.reason.length).toBeLessThan(300)
    expect(problems[1]?.reason).toMatch(/replacement/)
  })

  it('reports a duplicate node/ID once and keeps the first', () => {
    const { instances, problems } = mapHealthEntries([entry({ port: 1 }), entry({ port: 2 })], OPTS)
    expect(instances.map((i) => i.port)).toEqual([1])
    expect(problems).toHaveLength(1)
  })

  describe('addressKind', () => {
    const tagged = {
      lan_ipv4: { Address: '10.1.1.1', Port: 9001 },
      wan_ipv4: { Address: '203.0.113.9', Port: 0 },
      wan: { address: '203.0.113.10', port: 9443 },
    }
    it('uses the service tagged address and its port', () => {
      const { instances } = mapHealthEntries([entry({ serviceTagged: tagged })], {
        ...OPTS,
        addressKind: 'lan_ipv4',
      })
      expect(instances[0]).toMatchObject({ host: '10.1.1.1', port: 9001 })
    })
    it('keeps Service.Port when the tagged port is 0, and accepts lowercase keys', () => {
      const a = mapHealthEntries([entry({ serviceTagged: tagged })], {
        ...OPTS,
        addressKind: 'wan_ipv4',
      })
      expect(a.instances[0]).toMatchObject({ host: '203.0.113.9', port: 7443 })
      const b = mapHealthEntries([entry({ serviceTagged: tagged })], {
        ...OPTS,
        addressKind: 'wan',
      })
      expect(b.instances[0]).toMatchObject({ host: '203.0.113.10', port: 9443 })
    })
    it('then the service address, then the node tagged address, then Node.Address (translate_addr.go order)', () => {
      const a = mapHealthEntries([entry({ address: '172.18.0.5' })], {
        ...OPTS,
        addressKind: 'wan',
      })
      expect(a.instances[0]).toMatchObject({ host: '172.18.0.5', port: 7443 })
      const b = mapHealthEntries([entry()], { ...OPTS, addressKind: 'wan' })
      expect(b.instances[0]).toMatchObject({ host: '198.51.100.7', port: 7443 })
      const c = mapHealthEntries([entry()], { ...OPTS, addressKind: 'lan_ipv6' })
      expect(c.instances[0]).toMatchObject({ host: '10.20.3.17', port: 7443 })
    })
  })
})

// Equality of mapped instances is `sameInstance` (src/instance.ts), which the service cache uses
// to tell an update from an index-only bump: every field a Consul answer carries must count.
describe('sameInstance on mapped Consul entries', () => {
  const byKey = (list: readonly Instance[], node: string): Instance => {
    const found = list.find((i) => i.id.includes(node) || i.key.includes(node))
    if (found === undefined) throw new Error(`no instance for node ${node}`)
    return found
  }

  it('is true for the same content in any answer order or meta key order, false on any field', () => {
    const a = mapHealthEntries([entry({ node: 'a' }), entry({ node: 'b' })], OPTS).instances
    const b = mapHealthEntries([entry({ node: 'b' }), entry({ node: 'a' })], OPTS).instances
    expect(a).toHaveLength(2)
    for (const node of ['a', 'b']) expect(sameInstance(byKey(a, node), byKey(b, node))).toBe(true)

    const m1 = mapHealthEntries([entry({ node: 'a', meta: { x: '1', y: '2' } })], OPTS).instances
    const m2 = mapHealthEntries([entry({ node: 'a', meta: { y: '2', x: '1' } })], OPTS).instances
    expect(sameInstance(m1[0]!, m2[0]!)).toBe(true)

    const variants = [
      entry({ node: 'a', port: 1 }),
      entry({ node: 'a', tags: ['v3'] }),
      entry({ node: 'a', meta: { version: '2.4.2' } }),
      entry({ node: 'a', weights: { Passing: 6, Warning: 1 } }),
      entry({ node: 'a', statuses: ['warning'] }),
      entry({ node: 'a', address: '10.9.9.9' }),
    ]
    for (const v of variants) {
      const c = mapHealthEntries([v], OPTS).instances
      expect(c).toHaveLength(1)
      expect(sameInstance(c[0]!, byKey(a, 'a'))).toBe(false)
    }
  })
})
