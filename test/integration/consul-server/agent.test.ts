/**
 * Agent endpoints (docs/design/consul.md#agent-registration): registration defaults and
 * validation, TTL and HTTP checks, reaping, deregistration status codes, agent restart, 405s.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FakeClock } from '../../support/fake-clock.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { call, dispatcher, put, waitForHealth, type HealthEntry } from './helpers.js'

afterAll(async () => {
  await dispatcher.close()
})

interface AgentCheck {
  CheckID: string
  Name: string
  Status: string
  Output: string
  ServiceID: string
  Type: string
  Interval: string
  Timeout: string
}

describe('PUT /v1/agent/service/register', () => {
  let consul: ConsulTestServer
  beforeEach(async () => {
    consul = await startConsulServer()
  })
  afterEach(async () => {
    await consul.close()
  })

  it('applies Consul defaults: ID = Name, Weights 1/1, empty Tags/Meta, 200 with an empty body', async () => {
    const r = await put(consul, '/v1/agent/service/register', { Name: 'web', Port: 80 })
    expect([r.status, r.text]).toEqual([200, ''])
    const services = (await call(consul, '/v1/agent/services')).json<
      Record<string, Record<string, unknown>>
    >()
    expect(Object.keys(services)).toEqual(['web'])
    expect(services.web).toEqual({
      ID: 'web',
      Service: 'web',
      Tags: [],
      Meta: {},
      Port: 80,
      Address: '',
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      Datacenter: 'dc1',
    })
    const health = (await call(consul, '/v1/health/service/web')).json<HealthEntry[]>()
    expect(health[0]!.Node.Node).toBe('node-1')
    expect(health[0]!.Node.Address).toBe('127.0.0.1')
  })

  it('adds lan/wan tagged addresses for an IP-literal Address, and none without one', async () => {
    await put(consul, '/v1/agent/service/register', { Name: 'a', Address: '10.1.2.3', Port: 81 })
    await put(consul, '/v1/agent/service/register', { Name: 'b', Port: 82 })
    const s = (await call(consul, '/v1/agent/services')).json<
      Record<string, { TaggedAddresses?: unknown }>
    >()
    expect(s.a!.TaggedAddresses).toEqual({
      lan_ipv4: { Address: '10.1.2.3', Port: 81 },
      wan_ipv4: { Address: '10.1.2.3', Port: 81 },
    })
    expect(s.b!.TaggedAddresses).toBeUndefined()
  })

  it('names checks service:<id> (service:<id>:<n> for several), starts them critical unless Status is given', async () => {
    await put(consul, '/v1/agent/service/register', {
      Name: 'one',
      ID: 'one-1',
      Check: { TTL: '30s' },
    })
    await put(consul, '/v1/agent/service/register', {
      Name: 'two',
      Checks: [
        { TTL: '30s' },
        { TTL: '30s', Status: 'passing' },
        { CheckID: 'custom', Name: 'mine', TTL: '1m' },
      ],
    })
    const checks = (await call(consul, '/v1/agent/checks')).json<Record<string, AgentCheck>>()
    expect(Object.keys(checks).sort()).toEqual([
      'custom',
      'service:one-1',
      'service:two:1',
      'service:two:2',
    ])
    expect(checks['service:one-1']).toMatchObject({
      Name: "Service 'one' check",
      Status: 'critical',
      ServiceID: 'one-1',
      Type: 'ttl',
      Output: '',
    })
    expect(checks['service:two:1']!.Status).toBe('critical')
    expect(checks['service:two:2']!.Status).toBe('passing')
    expect(checks.custom).toMatchObject({ Name: 'mine', Status: 'critical' })
    // A critical TTL service is not routable until its first pass.
    expect((await call(consul, '/v1/health/service/one?passing')).json()).toEqual([])
  })

  it('accepts any key case and snake_case aliases for struct fields, but keeps Meta keys verbatim', async () => {
    const r = await put(consul, '/v1/agent/service/register', {
      name: 'snake',
      port: 9,
      enable_tag_override: true,
      meta: { Some_Key: 'v' },
      check: { ttl: '5s', deregister_critical_service_after: '90s' },
    })
    expect(r.status).toBe(200)
    const s = (await call(consul, '/v1/agent/service/snake')).json<Record<string, unknown>>()
    expect(s).toMatchObject({
      Service: 'snake',
      Port: 9,
      EnableTagOverride: true,
      Meta: { Some_Key: 'v' },
    })
    expect(typeof s.ContentHash).toBe('string')
  })

  it.each([
    [
      'not json',
      'oops',
      /^Request decode failed: invalid character 'o' looking for beginning of value$/,
    ],
    ['empty body', '', /^Request decode failed: EOF$/],
    [
      'a JSON array',
      [],
      /^Request decode failed: json: cannot unmarshal array into Go value of type structs.ServiceDefinition$/,
    ],
    ['no name', {}, /^Missing service name$/],
    ['wildcard address', { Name: 'x', Address: '0.0.0.0' }, /^Invalid service address$/],
    [
      'duration without unit',
      { Name: 'x', Check: { TTL: '10' } },
      /^Request decode failed: time: missing unit in duration "10"$/,
    ],
    [
      'bad duration',
      { Name: 'x', Check: { HTTP: 'http://127.0.0.1:1/', Interval: 'abc' } },
      /^Request decode failed: time: invalid duration "abc"$/,
    ],
    [
      'unknown unit',
      { Name: 'x', Checks: [{ TTL: '5sec' }] },
      /^Request decode failed: time: unknown unit "sec" in duration "5sec"$/,
    ],
    [
      'interval and ttl',
      { Name: 'x', Check: { HTTP: 'http://127.0.0.1:1/', Interval: '10s', TTL: '10s' } },
      /^Invalid check: Interval and TTL cannot both be specified$/,
    ],
    [
      'http without interval',
      { Name: 'x', Check: { HTTP: 'http://127.0.0.1:1/' } },
      /^Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks$/,
    ],
    [
      'no ttl',
      { Name: 'x', Check: { Notes: 'n' } },
      /^Invalid check: TTL must be > 0 for TTL checks$/,
    ],
    [
      'bad status',
      { Name: 'x', Check: { TTL: '10s', Status: 'up' } },
      /^Status for checks must 'passing', 'warning', 'critical'$/,
    ],
    [
      'bad weights',
      { Name: 'x', Weights: { Passing: 0, Warning: 1 } },
      /^Invalid Weights: Passing must be greater than 0$/,
    ],
    ['reserved meta', { Name: 'x', Meta: { 'consul-x': 'y' } }, /^Invalid Service Meta: /],
    [
      'port as string',
      { Name: 'x', Port: '80' },
      /^Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port of type int$/,
    ],
  ])("rejects %s with 400 and Consul's text", async (_label, body, message) => {
    const r = await put(consul, '/v1/agent/service/register', body)
    expect(r.status).toBe(400)
    expect(r.text).toMatch(message)
    expect((await call(consul, '/v1/agent/services')).json()).toEqual({})
  })

  it('re-registering the same ID upserts and carries check status over', async () => {
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Port: 80,
      Check: { TTL: '30s' },
    })
    expect((await put(consul, '/v1/agent/check/pass/service:web?note=up')).status).toBe(200)
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Port: 81,
      Tags: ['new'],
      Check: { TTL: '30s' },
    })
    const entries = (await call(consul, '/v1/health/service/web?passing')).json<HealthEntry[]>()
    expect(entries).toHaveLength(1)
    expect(entries[0]!.Service).toMatchObject({ Port: 81, Tags: ['new'] })
    expect(entries[0]!.Checks.find((c) => c.CheckID === 'service:web')).toMatchObject({
      Status: 'passing',
      Output: 'up',
    })
  })

  it('keeps checks missing from a re-registration unless ?replace-existing-checks', async () => {
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Checks: [
        { CheckID: 'a', TTL: '30s' },
        { CheckID: 'b', TTL: '30s' },
      ],
    })
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Checks: [{ CheckID: 'a', TTL: '30s' }],
    })
    expect(Object.keys((await call(consul, '/v1/agent/checks')).json<object>()).sort()).toEqual([
      'a',
      'b',
    ])
    await put(consul, '/v1/agent/service/register?replace-existing-checks', {
      Name: 'web',
      Checks: [{ CheckID: 'a', TTL: '30s' }],
    })
    expect(Object.keys((await call(consul, '/v1/agent/checks')).json<object>())).toEqual(['a'])
  })

  it('writes a service and its checks as one index (no half-registered state to observe)', async () => {
    const before = consul.index
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Checks: [{ TTL: '30s' }, { TTL: '30s' }],
    })
    expect(consul.index).toBe(before + 1)
  })

  it('answers 405 with Allow to a GET on write endpoints, and 200 to OPTIONS', async () => {
    for (const path of [
      '/v1/agent/service/register',
      '/v1/agent/service/deregister/web',
      '/v1/agent/check/pass/x',
      '/v1/agent/check/update/x',
    ]) {
      const r = await call(consul, path)
      expect([r.status, r.text, r.headers.allow]).toEqual([
        405,
        'method GET not allowed',
        'OPTIONS,PUT',
      ])
    }
    const p = await call(consul, '/v1/health/service/web', { method: 'PUT' })
    expect([p.status, p.headers.allow]).toEqual([405, 'OPTIONS,GET'])
    const o = await call(consul, '/v1/agent/service/register', { method: 'OPTIONS' })
    expect([o.status, o.headers.allow]).toEqual([200, 'OPTIONS,PUT'])
  })
})

describe('deregistration and TTL checks', () => {
  let consul: ConsulTestServer
  let clock: FakeClock
  beforeEach(async () => {
    clock = new FakeClock()
    consul = await startConsulServer({ clock })
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Port: 80,
      Check: { TTL: '10s' },
    })
  })
  afterEach(async () => {
    await consul.close()
  })

  const check = async (id = 'service:web'): Promise<AgentCheck | undefined> =>
    (await call(consul, '/v1/agent/checks')).json<Record<string, AgentCheck>>()[id]

  it('pass/warn/fail set the status and copy ?note into Output', async () => {
    expect((await put(consul, '/v1/agent/check/pass/service:web?note=all%20good')).status).toBe(200)
    expect(await check()).toMatchObject({ Status: 'passing', Output: 'all good' })
    await put(consul, '/v1/agent/check/warn/service:web')
    expect(await check()).toMatchObject({ Status: 'warning', Output: '' })
    await put(consul, '/v1/agent/check/fail/service:web?note=down')
    expect(await check()).toMatchObject({ Status: 'critical', Output: 'down' })
  })

  it('update takes {Status, Output} and rejects a bad status', async () => {
    expect(
      (
        await put(consul, '/v1/agent/check/update/service:web', {
          Status: 'warning',
          Output: 'slow',
        })
      ).status,
    ).toBe(200)
    expect(await check()).toMatchObject({ Status: 'warning', Output: 'slow' })
    const bad = await put(consul, '/v1/agent/check/update/service:web', { Status: 'ok' })
    expect([bad.status, bad.text]).toEqual([400, "Invalid check status: 'ok'"])
  })

  it('a TTL that runs out turns the check critical with "TTL expired"; each pass resets the clock', async () => {
    await put(consul, '/v1/agent/check/pass/service:web?note=ok')
    clock.advance(9_000)
    await put(consul, '/v1/agent/check/pass/service:web?note=ok')
    clock.advance(9_000)
    expect((await check())!.Status).toBe('passing')
    clock.advance(1_001)
    expect(await check()).toMatchObject({
      Status: 'critical',
      Output: 'TTL expired (last output before timeout follows): ok',
    })
    const entries = (await call(consul, '/v1/health/service/web?passing')).json()
    expect(entries).toEqual([])
  })

  it('takes a JSON number as nanoseconds: TTL 30 expires at once (the unit trap)', async () => {
    const r = await put(consul, '/v1/agent/service/register', { Name: 'trap', Check: { TTL: 30 } })
    expect(r.status).toBe(200)
    await put(consul, '/v1/agent/check/pass/service:trap?note=alive')
    expect((await check('service:trap'))!.Status).toBe('passing')
    clock.advance(1)
    expect(await check('service:trap')).toMatchObject({
      Status: 'critical',
      Output: 'TTL expired (last output before timeout follows): alive',
    })
  })

  it('without a previous output the expiry says just "TTL expired"', async () => {
    await put(consul, '/v1/agent/check/pass/service:web')
    clock.advance(10_001)
    expect(await check()).toMatchObject({ Status: 'critical', Output: 'TTL expired' })
  })

  it('unknown check: 404 with Consul\'s text (500 "does not have associated TTL" on legacy agents)', async () => {
    const r = await put(consul, '/v1/agent/check/pass/nope')
    expect([r.status, r.text]).toEqual([
      404,
      'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.',
    ])
    consul.faults.legacyStatusCodes = true
    const old = await put(consul, '/v1/agent/check/pass/nope')
    expect([old.status, old.text]).toEqual([500, 'CheckID "nope" does not have associated TTL'])
  })

  it('pass on a check that is not a TTL check: 500 "does not have associated TTL"', async () => {
    await put(consul, '/v1/agent/service/register', {
      Name: 'api',
      Check: { HTTP: 'http://127.0.0.1:1/health', Interval: '10s' },
    })
    const r = await put(consul, '/v1/agent/check/pass/service:api')
    expect([r.status, r.text]).toEqual([500, 'CheckID "service:api" does not have associated TTL'])
  })

  it('deregister: 200 and gone from the catalog; unknown ID 404 (200 on legacy agents)', async () => {
    const r = await put(consul, '/v1/agent/service/deregister/web')
    expect([r.status, r.text]).toEqual([200, ''])
    expect((await call(consul, '/v1/health/service/web')).json()).toEqual([])
    expect(await check()).toBeUndefined()
    const again = await put(consul, '/v1/agent/service/deregister/web')
    expect([again.status, again.text]).toEqual([
      404,
      'Unknown service ID "web". Ensure that the service ID is passed, not the service name.',
    ])
    consul.faults.legacyStatusCodes = true
    const old = await put(consul, '/v1/agent/service/deregister/web')
    expect([old.status, old.text]).toEqual([200, ''])
  })

  it('restartAgent(): the agent forgets its services and checks; the next pass gets 404', async () => {
    await put(consul, '/v1/agent/check/pass/service:web')
    consul.registerService({ name: 'catalog-only', port: 1 })
    consul.restartAgent()
    expect((await call(consul, '/v1/agent/services')).json()).toEqual({})
    expect((await call(consul, '/v1/health/service/web')).json()).toEqual([])
    expect((await put(consul, '/v1/agent/check/pass/service:web')).status).toBe(404)
    // The client's recovery: register again, then heartbeat.
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Port: 80,
      Check: { TTL: '10s' },
    })
    expect((await put(consul, '/v1/agent/check/pass/service:web')).status).toBe(200)
    expect((await call(consul, '/v1/health/service/catalog-only')).json<unknown[]>()).toHaveLength(
      1,
    )
  })

  it('service maintenance adds a critical _service_maintenance:<id> check; node maintenance a _node_maintenance one', async () => {
    await put(consul, '/v1/agent/check/pass/service:web')
    expect((await call(consul, '/v1/health/service/web?passing')).json<unknown[]>()).toHaveLength(1)
    expect(
      (await put(consul, '/v1/agent/service/maintenance/web?enable=true&reason=deploy')).status,
    ).toBe(200)
    const entry = (await call(consul, '/v1/health/service/web')).json<HealthEntry[]>()[0]!
    expect(entry.Checks.find((c) => c.CheckID === '_service_maintenance:web')).toMatchObject({
      Status: 'critical',
      Type: 'maintenance',
      ServiceID: 'web',
    })
    expect((await call(consul, '/v1/health/service/web?passing')).json()).toEqual([])
    await put(consul, '/v1/agent/service/maintenance/web?enable=false')
    expect((await call(consul, '/v1/health/service/web?passing')).json<unknown[]>()).toHaveLength(1)
    await put(consul, '/v1/agent/maintenance?enable=true')
    const node = (await call(consul, '/v1/health/service/web')).json<HealthEntry[]>()[0]!
    expect(node.Checks.find((c) => c.CheckID === '_node_maintenance')).toMatchObject({
      Status: 'critical',
      ServiceID: '',
    })
    expect((await call(consul, '/v1/health/service/web?passing')).json()).toEqual([])
    await put(consul, '/v1/agent/maintenance?enable=false')
    expect((await call(consul, '/v1/health/service/web?passing')).json<unknown[]>()).toHaveLength(1)
    expect((await put(consul, '/v1/agent/check/pass/_node_maintenance')).status).toBe(404)
  })

  it('maintenance endpoints validate like Consul', async () => {
    const missing = await put(consul, '/v1/agent/service/maintenance/web')
    expect([missing.status, missing.text]).toEqual([400, 'Missing value for enable'])
    const bad = await put(consul, '/v1/agent/maintenance?enable=yes')
    expect([bad.status, bad.text]).toEqual([400, 'Invalid value for enable: "yes"'])
    const unknown = await put(consul, '/v1/agent/service/maintenance/nope?enable=true')
    expect(unknown.status).toBe(404)
  })

  it('restartAgent({ persist }): services and TTL status survive, the TTL clock restarts', async () => {
    await put(consul, '/v1/agent/check/pass/service:web?note=ok')
    const index = consul.index
    clock.advance(9_000)
    consul.restartAgent({ persist: true })
    expect(consul.index).toBe(index)
    expect((await check())!.Status).toBe('passing')
    expect((await put(consul, '/v1/agent/check/pass/service:web?note=ok')).status).toBe(200)
    clock.advance(9_000)
    expect((await check())!.Status).toBe('passing')
    clock.advance(1_001)
    expect((await check())!.Status).toBe('critical')
  })

  it('restartAgent({ dropConnections }) cuts parked queries, as a process exit does', async () => {
    const first = await call(consul, '/v1/health/service/web')
    const parked = call(consul, `/v1/health/service/web?index=${first.index}&wait=1m`).then(
      () => 'answered',
      () => 'cut',
    )
    await consul.waitForBlockingQueries(1)
    consul.restartAgent({ dropConnections: true })
    expect(await parked).toBe('cut')
    expect((await call(consul, '/v1/agent/services')).json()).toEqual({})
  })

  it('/v1/agent/service/:id answers 404 for an unknown ID', async () => {
    const r = await call(consul, '/v1/agent/service/nope')
    expect(r.status).toBe(404)
  })
})

describe('close()', () => {
  it('leaves no timer behind: checks, TTLs, the reaper, deferred writes and parked queries', async () => {
    const clock = new FakeClock()
    const consul = await startConsulServer({ clock, checkUpdateIntervalMs: 60_000 })
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Checks: [
        { TTL: '10s' },
        { HTTP: 'http://127.0.0.1:1/', Interval: '5s' },
        { TCP: '127.0.0.1:1', Interval: '5s' },
      ],
    })
    await put(consul, '/v1/agent/check/pass/service:web:1?note=a')
    await put(consul, '/v1/agent/check/pass/service:web:1?note=b')
    const first = await call(consul, '/v1/health/service/web')
    const parked = call(consul, `/v1/health/service/web?index=${first.index}&wait=1m`).catch(
      () => 'closed',
    )
    await consul.waitForBlockingQueries(1)
    expect(clock.pending).toBeGreaterThanOrEqual(6)
    await consul.close()
    expect(clock.pending).toBe(0)
    expect(await parked).toBe('closed')
    // Nothing runs after close, even if time moves on.
    clock.advance(3_600_000)
    expect(clock.pending).toBe(0)
  })
})

describe('check_update_interval', () => {
  let consul: ConsulTestServer
  let clock: FakeClock
  afterEach(async () => {
    await consul.close()
  })

  it('defers output-only changes to the catalog; status changes go at once', async () => {
    clock = new FakeClock()
    consul = await startConsulServer({ clock, random: () => 0, checkUpdateIntervalMs: 60_000 })
    await put(consul, '/v1/agent/service/register', { Name: 'web', Check: { TTL: '1h' } })
    await put(consul, '/v1/agent/check/pass/service:web?note=v1')
    const catalogOutput = async (): Promise<string | undefined> =>
      (await call(consul, '/v1/health/service/web'))
        .json<HealthEntry[]>()[0]!
        .Checks.find((c) => c.CheckID === 'service:web')?.Output
    expect(await catalogOutput()).toBe('v1')
    const index = consul.index
    // Same status, new note: the agent shows it, the catalog (and its index) waits.
    await put(consul, '/v1/agent/check/pass/service:web?note=v2')
    await put(consul, '/v1/agent/check/pass/service:web?note=v3')
    expect(
      (await call(consul, '/v1/agent/checks')).json<Record<string, AgentCheck>>()['service:web']!
        .Output,
    ).toBe('v3')
    expect(await catalogOutput()).toBe('v1')
    expect(consul.index).toBe(index)
    // interval/2 + random(interval) with random() = 0.
    clock.advance(29_999)
    expect(await catalogOutput()).toBe('v1')
    clock.advance(1)
    expect(await catalogOutput()).toBe('v3')
    expect(consul.index).toBe(index + 1)
    // A status change is written at once, output included.
    await put(consul, '/v1/agent/check/warn/service:web?note=slow')
    expect(await catalogOutput()).toBe('slow')
    // An identical update writes nothing.
    const after = consul.index
    await put(consul, '/v1/agent/check/warn/service:web?note=slow')
    expect(consul.index).toBe(after)
  })
})

describe('DeregisterCriticalServiceAfter reaping', () => {
  let consul: ConsulTestServer
  let clock: FakeClock
  afterEach(async () => {
    await consul.close()
  })

  it('reaps a service critical for longer than the timeout, never sooner than the 1 m floor', async () => {
    clock = new FakeClock()
    consul = await startConsulServer({ clock })
    const r = await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Check: { TTL: '5s', DeregisterCriticalServiceAfter: '10s' },
    })
    expect(r.status).toBe(200)
    // Critical from registration. 10 s is below check_deregister_interval_min (1 m): the floor wins.
    clock.advance(30_000)
    expect(Object.keys((await call(consul, '/v1/agent/services')).json<object>())).toEqual(['web'])
    clock.advance(30_000)
    expect(Object.keys((await call(consul, '/v1/agent/services')).json<object>())).toEqual(['web'])
    clock.advance(30_000)
    expect((await call(consul, '/v1/agent/services')).json()).toEqual({})
    expect((await call(consul, '/v1/health/service/web')).json()).toEqual([])
  })

  it('a passing service is not reaped, and the critical clock restarts after a pass', async () => {
    clock = new FakeClock()
    consul = await startConsulServer({
      clock,
      checkDeregisterIntervalMinMs: 0,
      checkReapIntervalMs: 1_000,
    })
    await put(consul, '/v1/agent/service/register', {
      Name: 'web',
      Check: { TTL: '1h', DeregisterCriticalServiceAfter: '5s' },
    })
    clock.advance(3_000)
    await put(consul, '/v1/agent/check/pass/service:web')
    clock.advance(60_000)
    await put(consul, '/v1/agent/check/fail/service:web')
    clock.advance(4_000)
    expect(Object.keys((await call(consul, '/v1/agent/services')).json<object>())).toEqual(['web'])
    clock.advance(2_000)
    expect((await call(consul, '/v1/agent/services')).json()).toEqual({})
  })
})

describe('HTTP checks', () => {
  let consul: ConsulTestServer
  let target: http.Server
  let status = 200
  const seen: http.IncomingHttpHeaders[] = []
  beforeEach(async () => {
    status = 200
    seen.length = 0
    target = http.createServer((req, res) => {
      seen.push(req.headers)
      res.statusCode = status
      res.end(`status ${status}`)
    })
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
    consul = await startConsulServer({ minCheckIntervalMs: 10 })
  })
  afterEach(async () => {
    await consul.close()
    await new Promise((resolve) => target.close(resolve))
  })

  it('GETs the URL every Interval: 2xx passing, 429 warning, anything else critical', async () => {
    const url = `http://127.0.0.1:${(target.address() as AddressInfo).port}/health`
    const r = await put(consul, '/v1/agent/service/register', {
      Name: 'api',
      Port: 1,
      Check: { HTTP: url, Interval: '50ms', Timeout: '1s' },
    })
    expect(r.status).toBe(200)
    const statusOf = (e: HealthEntry[]): string | undefined =>
      e[0]?.Checks.find((c) => c.CheckID === 'service:api')?.Status
    const passing = await waitForHealth(consul, 'api', (e) => statusOf(e) === 'passing')
    expect(passing[0]!.Checks.find((c) => c.CheckID === 'service:api')).toMatchObject({
      Type: 'http',
      Output: `HTTP GET ${url}: 200 OK Output: status 200`,
    })
    expect(seen[0]!['user-agent']).toBe('Consul Health Check')
    status = 429
    await waitForHealth(consul, 'api', (e) => statusOf(e) === 'warning')
    status = 503
    const critical = await waitForHealth(consul, 'api', (e) => statusOf(e) === 'critical')
    expect(critical[0]!.Checks.find((c) => c.CheckID === 'service:api')!.Output).toBe(
      `HTTP GET ${url}: 503 Service Unavailable Output: status 503`,
    )
    const agentCheck = (await call(consul, '/v1/agent/checks')).json<Record<string, AgentCheck>>()[
      'service:api'
    ]
    expect(agentCheck).toMatchObject({ Interval: '50ms', Timeout: '1s' })
  })

  it('honours SuccessBeforePassing and FailuresBeforeWarning/Critical', async () => {
    const url = `http://127.0.0.1:${(target.address() as AddressInfo).port}/health`
    status = 500
    await put(consul, '/v1/agent/service/register', {
      Name: 'api',
      Check: {
        HTTP: url,
        Interval: '250ms',
        Status: 'passing',
        FailuresBeforeWarning: 1,
        FailuresBeforeCritical: 3,
        SuccessBeforePassing: 2,
      },
    })
    const history: string[] = []
    const record = (e: HealthEntry[]): boolean => {
      const s = e[0]?.Checks.find((c) => c.CheckID === 'service:api')?.Status
      if (s !== undefined && history.at(-1) !== s) history.push(s)
      return false
    }
    await waitForHealth(consul, 'api', (e) => {
      record(e)
      return history.includes('critical')
    })
    expect(seen.length).toBeGreaterThanOrEqual(3)
    const probesAtCritical = seen.length
    status = 200
    await waitForHealth(consul, 'api', (e) => {
      record(e)
      return history.at(-1) === 'passing'
    })
    // The first read may already come after the first probe; every later transition is seen
    // because a probe runs only every 250 ms while each change wakes the blocking query at once.
    expect(history.slice(history.indexOf('warning'))).toEqual(['warning', 'critical', 'passing'])
    expect(seen.length - probesAtCritical).toBeGreaterThanOrEqual(2)
  })

  it('a refused connection is critical', async () => {
    const port = (target.address() as AddressInfo).port
    await new Promise((resolve) => target.close(resolve))
    // A fresh, listening target for afterEach to close; the check dials the freed port.
    target = http.createServer()
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
    await put(consul, '/v1/agent/service/register', {
      Name: 'api',
      Check: { HTTP: `http://127.0.0.1:${port}/`, Interval: '50ms', Status: 'passing' },
    })
    const e = await waitForHealth(
      consul,
      'api',
      (x) =>
        x[0]?.Checks.some((c) => c.CheckID === 'service:api' && c.Status === 'critical') === true,
    )
    expect(e[0]!.Checks.find((c) => c.CheckID === 'service:api')!.Output).toMatch(
      /^Get "http:\/\/127\.0\.0\.1:\d+\/": .*ECONNREFUSED/,
    )
  })

  it('TCP checks connect: passing on connect, critical when refused', async () => {
    const port = (target.address() as AddressInfo).port
    await put(consul, '/v1/agent/service/register', {
      Name: 'tcp',
      Check: { TCP: `127.0.0.1:${port}`, Interval: '50ms' },
    })
    const up = await waitForHealth(
      consul,
      'tcp',
      (x) =>
        x[0]?.Checks.some((c) => c.CheckID === 'service:tcp' && c.Status === 'passing') === true,
    )
    expect(up[0]!.Checks.find((c) => c.CheckID === 'service:tcp')).toMatchObject({
      Type: 'tcp',
      Output: `TCP connect 127.0.0.1:${port}: Success`,
    })
    await new Promise((resolve) => target.close(resolve))
    target.closeAllConnections()
    await waitForHealth(
      consul,
      'tcp',
      (x) =>
        x[0]?.Checks.some((c) => c.CheckID === 'service:tcp' && c.Status === 'critical') === true,
    )
    target = http.createServer()
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
  })
})
