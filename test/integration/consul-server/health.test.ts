/**
 * Response shapes and query parameters of the read endpoints
 * (docs/design/consul.md#health-service-query-parameters, #response-shapes).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { call, dispatcher, type HealthEntry } from './helpers.js'

afterAll(async () => {
  await dispatcher.close()
})

describe('health and catalog reads', () => {
  let consul: ConsulTestServer
  beforeEach(async () => {
    consul = await startConsulServer({ datacenter: 'eu-west' })
    consul.addNode('ip-10-20-3-17', { address: '10.20.3.17', meta: { rack: 'r12' } })
    consul.addNode('ip-10-20-4-9', { address: '10.20.4.9', meta: { rack: 'r7' } })
    consul.registerService({
      node: 'ip-10-20-3-17',
      name: 'orders',
      id: 'orders-a',
      port: 7443,
      tags: ['v2', 'grpc'],
      meta: { version: '2.4.1' },
      weights: { passing: 5, warning: 1 },
      checks: [{ status: 'warning', output: 'busy' }],
    })
    consul.registerService({
      node: 'ip-10-20-4-9',
      name: 'orders',
      id: 'orders-b',
      address: '172.18.0.5',
      port: 7443,
      tags: ['v1'],
      meta: { version: '2.4.0' },
      checks: [{ status: 'passing' }],
    })
    consul.registerService({
      node: 'ip-10-20-4-9',
      name: 'orders',
      id: 'orders-c',
      port: 7444,
      tags: ['V2', 'grpc'],
      checks: [{ status: 'passing' }],
    })
  })
  afterEach(async () => {
    await consul.close()
  })

  it('returns ServiceEntry[] with the exact PascalCase field sets', async () => {
    const r = await call(consul, '/v1/health/service/orders')
    expect(r.status).toBe(200)
    const entries = r.json<Record<string, Record<string, unknown> | Record<string, unknown>[]>[]>()
    expect(entries.map((e) => (e.Service as { ID: string }).ID)).toEqual([
      'orders-a',
      'orders-b',
      'orders-c',
    ])
    const a = entries[0]!
    expect(Object.keys(a)).toEqual(['Node', 'Service', 'Checks'])
    expect(Object.keys(a.Node as object)).toEqual([
      'ID',
      'Node',
      'Address',
      'Datacenter',
      'TaggedAddresses',
      'Meta',
      'CreateIndex',
      'ModifyIndex',
    ])
    expect(a.Node).toMatchObject({
      Node: 'ip-10-20-3-17',
      Address: '10.20.3.17',
      Datacenter: 'eu-west',
      Meta: { rack: 'r12' },
      TaggedAddresses: {
        lan: '10.20.3.17',
        lan_ipv4: '10.20.3.17',
        wan: '10.20.3.17',
        wan_ipv4: '10.20.3.17',
      },
    })
    expect(Object.keys(a.Service as object)).toEqual([
      'ID',
      'Service',
      'Tags',
      'Address',
      'Meta',
      'Port',
      'Weights',
      'EnableTagOverride',
      'Proxy',
      'Connect',
      'PeerName',
      'CreateIndex',
      'ModifyIndex',
    ])
    expect(a.Service).toMatchObject({
      Service: 'orders',
      Address: '',
      Port: 7443,
      Tags: ['v2', 'grpc'],
      Meta: { version: '2.4.1' },
      Weights: { Passing: 5, Warning: 1 },
    })
    const checks = a.Checks as Record<string, unknown>[]
    expect(checks.map((c) => c.CheckID)).toEqual(['serfHealth', 'service:orders-a'])
    expect(Object.keys(checks[1]!)).toEqual([
      'Node',
      'CheckID',
      'Name',
      'Status',
      'Notes',
      'Output',
      'ServiceID',
      'ServiceName',
      'ServiceTags',
      'Type',
      'Interval',
      'Timeout',
      'ExposedPort',
      'Definition',
      'CreateIndex',
      'ModifyIndex',
    ])
    expect(checks[0]).toMatchObject({
      ServiceID: '',
      ServiceName: '',
      ServiceTags: [],
      Status: 'passing',
    })
    expect(checks[1]).toMatchObject({
      ServiceID: 'orders-a',
      ServiceName: 'orders',
      ServiceTags: ['v2', 'grpc'],
      Status: 'warning',
      Output: 'busy',
      Name: "Service 'orders' check",
    })
    expect((entries[1]!.Service as { Address: string }).Address).toBe('172.18.0.5')
  })

  it('returns 200 [] with an index for an unknown service, never 404', async () => {
    const r = await call(consul, '/v1/health/service/nope')
    expect([r.status, r.text]).toEqual([200, '[]'])
    expect(r.index).toBeGreaterThan(0)
  })

  it('?passing drops every entry with any non-passing check, node-level checks included', async () => {
    const ids = async (q: string): Promise<string[]> =>
      (await call(consul, `/v1/health/service/orders${q}`))
        .json<HealthEntry[]>()
        .map((e) => e.Service.ID)
    expect(await ids('')).toEqual(['orders-a', 'orders-b', 'orders-c'])
    // filterNonPassing swaps a failing entry with the last one: catalog order is not kept.
    expect(await ids('?passing')).toEqual(['orders-c', 'orders-b'])
    expect(await ids('?passing=true')).toEqual(['orders-c', 'orders-b'])
    expect(await ids('?passing=1')).toEqual(['orders-c', 'orders-b'])
    expect(await ids('?passing=false')).toEqual(['orders-a', 'orders-b', 'orders-c'])
    consul.setNodeHealth('ip-10-20-4-9', 'critical')
    expect(await ids('?passing')).toEqual([])
    expect(await ids('')).toEqual(['orders-a', 'orders-b', 'orders-c'])
    const bad = await call(consul, '/v1/health/service/orders?passing=yes')
    expect([bad.status, bad.text]).toEqual([400, 'Invalid value for ?passing'])
  })

  it('?tag repeats as AND and matches case-insensitively', async () => {
    const ids = async (q: string): Promise<string[]> =>
      (await call(consul, `/v1/health/service/orders${q}`))
        .json<HealthEntry[]>()
        .map((e) => e.Service.ID)
    expect(await ids('?tag=v2')).toEqual(['orders-a', 'orders-c'])
    expect(await ids('?tag=v2&tag=grpc')).toEqual(['orders-a', 'orders-c'])
    expect(await ids('?tag=v1&tag=grpc')).toEqual([])
    expect(await ids('?tag=GRPC')).toEqual(['orders-a', 'orders-c'])
  })

  it('?filter supports the documented bexpr subset', async () => {
    const ids = async (expr: string): Promise<string[]> => {
      const r = await call(consul, `/v1/health/service/orders?filter=${encodeURIComponent(expr)}`)
      expect(r.status).toBe(200)
      return r.json<HealthEntry[]>().map((e) => e.Service.ID)
    }
    expect(await ids('"v2" in Service.Tags')).toEqual(['orders-a'])
    expect(await ids('Service.Tags contains "grpc"')).toEqual(['orders-a', 'orders-c'])
    expect(await ids('"grpc" not in Service.Tags')).toEqual(['orders-b'])
    expect(await ids('Service.Meta.version == "2.4.0"')).toEqual(['orders-b'])
    expect(await ids('Service.Meta.version != "2.4.0"')).toEqual(['orders-a', 'orders-c'])
    expect(await ids('Node.Meta.rack == "r7" and Service.Port == 7444')).toEqual(['orders-c'])
    expect(await ids('Node.Meta.rack == "r12" or Service.Address == "172.18.0.5"')).toEqual([
      'orders-a',
      'orders-b',
    ])
    expect(await ids('not (Node.Meta.rack == "r7")')).toEqual(['orders-a'])
    expect(await ids('Service.Meta is empty')).toEqual(['orders-c'])
    expect(await ids('Checks.Status == "warning"')).toEqual(['orders-a'])
    expect(await ids('Service.Meta.version matches "^2\\\\.4\\\\."')).toEqual([
      'orders-a',
      'orders-b',
    ])
    expect(await ids('"version" in Service.Meta')).toEqual(['orders-a', 'orders-b'])
    expect(await ids('Service.Meta["version"] == `2.4.1`')).toEqual(['orders-a'])
    expect(await ids('Service.Tags contains v1')).toEqual(['orders-b'])
  })

  it('answers an invalid filter with 500 "Failed to create boolean expression evaluator"', async () => {
    for (const expr of [
      'Service.Nope == "x"',
      'Service.Tags ==',
      '(Service.ID == "a"',
      'Service.Tags == "v2"',
      'Service.ID == "a" AND Service.Port == 1',
      'Service.Meta.x-y == "1"',
    ]) {
      const r = await call(consul, `/v1/health/service/orders?filter=${encodeURIComponent(expr)}`)
      expect(r.status).toBe(500)
      expect(r.text).toMatch(/^Failed to create boolean expression evaluator: /)
    }
  })

  it('?node-meta filters on node metadata; ?near is accepted and ignored', async () => {
    const r = await call(consul, '/v1/health/service/orders?node-meta=rack:r7&near=_agent')
    expect(r.json<HealthEntry[]>().map((e) => e.Service.ID)).toEqual(['orders-b', 'orders-c'])
  })

  it('?dc of another datacenter fails like an agent without a WAN path', async () => {
    expect((await call(consul, '/v1/health/service/orders?dc=eu-west')).status).toBe(200)
    const r = await call(consul, '/v1/health/service/orders?dc=us-east')
    expect([r.status, r.text]).toEqual([500, 'No path to datacenter'])
  })

  it('/v1/catalog/service is flat, ignores health, and keeps node and service addresses apart', async () => {
    consul.setNodeHealth('ip-10-20-4-9', 'critical')
    const r = await call(consul, '/v1/catalog/service/orders?passing')
    expect(r.status).toBe(200)
    const rows = r.json<Record<string, unknown>[]>()
    expect(rows.map((x) => x.ServiceID)).toEqual(['orders-a', 'orders-b', 'orders-c'])
    expect(Object.keys(rows[1]!)).toEqual([
      'ID',
      'Node',
      'Address',
      'Datacenter',
      'TaggedAddresses',
      'NodeMeta',
      'ServiceKind',
      'ServiceID',
      'ServiceName',
      'ServiceTags',
      'ServiceAddress',
      'ServiceTaggedAddresses',
      'ServiceWeights',
      'ServiceMeta',
      'ServicePort',
      'ServiceEnableTagOverride',
      'ServiceProxy',
      'ServiceConnect',
      'CreateIndex',
      'ModifyIndex',
    ])
    expect(rows[1]).toMatchObject({
      Address: '10.20.4.9',
      ServiceAddress: '172.18.0.5',
      ServicePort: 7443,
      ServiceWeights: { Passing: 1, Warning: 1 },
    })
    expect(r.index).toBe((await call(consul, '/v1/health/service/orders')).index)
    const tagged = await call(consul, '/v1/catalog/service/orders?tag=v1')
    expect(tagged.json<unknown[]>()).toHaveLength(1)
  })

  it('/v1/catalog/services lists names with their distinct tags', async () => {
    consul.registerService({ node: 'ip-10-20-4-9', name: 'billing', id: 'b1', port: 1 })
    const r = await call(consul, '/v1/catalog/services')
    const body = r.json<Record<string, string[]>>()
    expect(Object.keys(body).sort()).toEqual(['billing', 'orders'])
    expect([...body.orders!].sort()).toEqual(['V2', 'grpc', 'v1', 'v2'])
    expect(body.billing).toEqual([])
  })

  it('?pretty indents with four spaces and ends with a newline', async () => {
    const r = await call(consul, '/v1/health/service/nope?pretty')
    expect(r.text).toBe('[]\n')
    const p = await call(consul, '/v1/catalog/services?pretty')
    expect(p.text).toMatch(/^\{\n {4}"/)
  })

  it('leaderless: default reads fail with 500, ?stale reads answer with KnownLeader false', async () => {
    consul.faults.leaderless = true
    const r = await call(consul, '/v1/health/service/orders')
    expect([r.status, r.text]).toEqual([500, 'No cluster leader'])
    const s = await call(consul, '/v1/health/service/orders?stale')
    expect(s.status).toBe(200)
    expect(s.headers['x-consul-knownleader']).toBe('false')
  })

  it('streaming backend: blocking health reads omit KnownLeader/LastContact', async () => {
    consul.faults.streamingBackend = true
    const first = await call(consul, '/v1/health/service/orders')
    expect(first.headers['x-consul-query-backend']).toBe('blocking-query')
    const r = await call(consul, `/v1/health/service/orders?index=${first.index! - 1}`)
    expect(r.headers['x-consul-query-backend']).toBe('streaming')
    expect(r.headers['x-consul-knownleader']).toBeUndefined()
    expect(r.headers['x-consul-lastcontact']).toBeUndefined()
  })

  it("unknown /v1 paths get 404 with Consul's text", async () => {
    const r = await call(consul, '/v1/health/nope/orders')
    expect([r.status, r.text]).toEqual([
      404,
      'Invalid URL path: not a recognized HTTP API endpoint',
    ])
  })
})
