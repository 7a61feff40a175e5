/**
 * ACLs (docs/design/consul.md#acl-tokens): token sources and precedence, 403 texts, default-deny
 * filtering of reads.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { call, dispatcher, put } from './helpers.js'

afterAll(async () => {
  await dispatcher.close()
})

describe('ACL enabled (default deny)', () => {
  let consul: ConsulTestServer
  beforeEach(async () => {
    consul = await startConsulServer({
      acl: {
        enabled: true,
        masterToken: 'root',
        tokens: {
          writer: { write: true },
          reader: { write: false },
          blind: { write: false, read: false },
        },
      },
    })
    consul.registerService({ name: 'web', port: 80 })
  })
  afterEach(async () => {
    await consul.close()
  })

  const health = (headers: Record<string, string> = {}, query = ''): ReturnType<typeof call> =>
    call(consul, `/v1/health/service/web${query}`, { headers })

  it('filters reads for anonymous requests instead of rejecting them, without the filtered header', async () => {
    const r = await health()
    expect([r.status, r.text]).toEqual([200, '[]'])
    expect(r.index).toBeGreaterThan(0)
    expect(r.headers['x-consul-results-filtered-by-acls']).toBeUndefined()
    expect(r.headers['x-consul-default-acl-policy']).toBe('deny')
  })

  it('reads with a token from X-Consul-Token, Authorization: Bearer or ?token=', async () => {
    expect((await health({ 'X-Consul-Token': 'reader' })).json<unknown[]>()).toHaveLength(1)
    expect((await health({ Authorization: 'Bearer reader' })).json<unknown[]>()).toHaveLength(1)
    expect((await health({}, '?token=reader')).json<unknown[]>()).toHaveLength(1)
  })

  it('takes only the first word after "Bearer" (any case), and ignores other schemes', async () => {
    expect((await health({ Authorization: 'bearer reader extra' })).json<unknown[]>()).toHaveLength(
      1,
    )
    expect((await health({ Authorization: 'Basic reader' })).json()).toEqual([])
  })

  it('agent-local reads: filtered with the header for token holders, 403 for one service without read', async () => {
    await put(
      consul,
      '/v1/agent/service/register',
      { Name: 'api', Check: { TTL: '1m' } },
      { 'X-Consul-Token': 'writer' },
    )
    const blind = await call(consul, '/v1/agent/services', {
      headers: { 'X-Consul-Token': 'blind' },
    })
    expect(blind.json()).toEqual({})
    expect(blind.headers['x-consul-results-filtered-by-acls']).toBe('true')
    const reader = await call(consul, '/v1/agent/services', {
      headers: { 'X-Consul-Token': 'reader' },
    })
    expect(Object.keys(reader.json<object>())).toEqual(['api'])
    expect(reader.headers['x-consul-results-filtered-by-acls']).toBe('false')
    const anon = await call(consul, '/v1/agent/checks')
    expect(anon.json()).toEqual({})
    expect(anon.headers['x-consul-results-filtered-by-acls']).toBeUndefined()
    const one = await call(consul, '/v1/agent/service/api', {
      headers: { 'X-Consul-Token': 'blind' },
    })
    expect(one.status).toBe(403)
    expect(one.text).toMatch(
      /^Permission denied: token with AccessorID '.+' lacks permission 'service:read' on "api"$/,
    )
  })

  it('?token= wins over the header, and the header over Authorization', async () => {
    const q = await health({ 'X-Consul-Token': 'reader' }, '?token=bogus')
    expect([q.status, q.text]).toEqual([403, 'ACL not found'])
    const h = await health({ 'X-Consul-Token': 'bogus', Authorization: 'Bearer reader' })
    expect([h.status, h.text]).toEqual([403, 'ACL not found'])
  })

  it('an unknown token is 403 "ACL not found" on reads and writes', async () => {
    expect((await health({ 'X-Consul-Token': 'nope' })).status).toBe(403)
    const w = await put(
      consul,
      '/v1/agent/service/register',
      { Name: 'x' },
      { 'X-Consul-Token': 'nope' },
    )
    expect([w.status, w.text]).toEqual([403, 'ACL not found'])
  })

  it('a token without read on the service gets [] with X-Consul-Results-Filtered-By-ACLs', async () => {
    const r = await health({ 'X-Consul-Token': 'blind' })
    expect(r.json()).toEqual([])
    expect(r.headers['x-consul-results-filtered-by-acls']).toBe('true')
  })

  it('writes need service:write: 403 "Permission denied" otherwise', async () => {
    const anon = await put(consul, '/v1/agent/service/register', { Name: 'api' })
    expect(anon.status).toBe(403)
    expect(anon.text).toBe(
      `Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'service:write' on "api"`,
    )
    const ro = await put(
      consul,
      '/v1/agent/service/register',
      { Name: 'api' },
      { 'X-Consul-Token': 'reader' },
    )
    expect(ro.status).toBe(403)
    expect(ro.text).toMatch(
      /^Permission denied: token with AccessorID '[0-9a-f-]{36}' lacks permission 'service:write' on "api"$/,
    )
    expect(
      (
        await put(
          consul,
          '/v1/agent/service/register',
          { Name: 'api', Check: { TTL: '1m' } },
          { 'X-Consul-Token': 'writer' },
        )
      ).status,
    ).toBe(200)
    expect(
      (
        await put(consul, '/v1/agent/check/pass/service:api', undefined, {
          'X-Consul-Token': 'reader',
        })
      ).status,
    ).toBe(403)
    expect(
      (
        await put(consul, '/v1/agent/check/pass/service:api', undefined, {
          'X-Consul-Token': 'writer',
        })
      ).status,
    ).toBe(200)
    expect(
      (
        await put(consul, '/v1/agent/service/deregister/api', undefined, {
          'X-Consul-Token': 'reader',
        })
      ).status,
    ).toBe(403)
    expect(
      (
        await put(consul, '/v1/agent/service/deregister/api', undefined, {
          Authorization: 'Bearer root',
        })
      ).status,
    ).toBe(200)
  })

  it('validation still comes before the permission check, as in AgentRegisterService', async () => {
    const r = await put(consul, '/v1/agent/service/register', { Name: 'x', Check: { TTL: '10' } })
    expect(r.status).toBe(400)
  })

  it('records where the token came from, so tests can assert it never travels in the URL', async () => {
    await health({ 'X-Consul-Token': 'reader' })
    const last = consul.stats.requests.at(-1)!
    expect(last.query.has('token')).toBe(false)
    expect(last.headers['x-consul-token']).toBe('reader')
  })
})

describe('ACL disabled', () => {
  it('allows everything and says so in X-Consul-Default-Acl-Policy', async () => {
    await using consul = await startConsulServer()
    const r = await put(
      consul,
      '/v1/agent/service/register',
      { Name: 'x' },
      { 'X-Consul-Token': 'anything' },
    )
    expect(r.status).toBe(200)
    expect(r.headers['x-consul-default-acl-policy']).toBe('allow')
  })
})

describe('ACL check order on register', () => {
  it('resolves the token before validating weights and checks (AgentRegisterService order)', async () => {
    await using consul = await startConsulServer({ acl: { enabled: true, masterToken: 'root' } })
    const bogus = await put(
      consul,
      '/v1/agent/service/register',
      { Name: 'x', Weights: { Passing: 0 } },
      { 'X-Consul-Token': 'bogus' },
    )
    expect([bogus.status, bogus.text]).toEqual([403, 'ACL not found'])
    const anon = await put(consul, '/v1/agent/service/register', {
      Name: 'x',
      Weights: { Passing: 0 },
    })
    expect(anon.status).toBe(400)
    const decode = await put(
      consul,
      '/v1/agent/service/register',
      { Name: 'x', Check: { TTL: '10' } },
      { 'X-Consul-Token': 'bogus' },
    )
    expect(decode.status).toBe(400)
  })
})
