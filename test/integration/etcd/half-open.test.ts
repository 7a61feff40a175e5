/**
 * A half-open connection (the proxy keeps both sockets open but forwards nothing): etcd3's
 * default client never notices (docs/design/etcd.md#half-open-connections); ours must, through
 * gRPC keepalive, and recover.
 */
import { EventEmitter } from 'node:events'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ErrorCode } from '../../../src/errors.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { EtcdServer } from '../../support/etcd.js'
import { TcpProxy } from '../../support/tcp-proxy.js'
import { withDeadline } from '../../support/wait.js'
import { hasIds, Recorder, wayfindValue } from './helpers.js'

let server: EtcdServer

beforeAll(async () => {
  server = await EtcdServer.start()
})

afterAll(async () => {
  await server.remove()
})

it('detects a blackholed connection and recovers within 20 s (default keepalive 10 s / 5 s)', async () => {
  const prefix = '/h1/'
  const writer = server.client()
  await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
  const proxy = await TcpProxy.start({ port: server.clientPort })
  const watching = new EventEmitter()
  const provider = EtcdProvider.withHooks(
    { hosts: proxy.host, prefix },
    {
      onWatching: () => {
        watching.emit('watching')
      },
    },
  )
  const rec = new Recorder()
  const ac = new AbortController()
  try {
    const created = new Promise((r) => watching.once('watching', r))
    provider.watch('svc', rec, { signal: ac.signal })
    await rec.until(hasIds('a'))
    await withDeadline(created, 10_000, 'the watch stream')
    const errorsBefore = rec.errors.length
    const connectionsBefore = proxy.connections
    const t0 = performance.now()
    proxy.blackhole()
    // Written while the watcher's path is silent: only a new connection can bring it.
    await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
    const detected = rec
      .untilError((e) => e.code === ErrorCode.REGISTRY_UNAVAILABLE, 20_000, errorsBefore)
      .then(() => performance.now() - t0)
    await rec.until(hasIds('a', 'b'), 20_000, 'the write made during the blackhole')
    const recoveredMs = performance.now() - t0
    const detectedMs = await detected
    expect(proxy.connections).toBeGreaterThan(connectionsBefore)
    process.stdout.write(
      `[measure] half-open: detected after ${detectedMs.toFixed(0)} ms, recovered after ${recoveredMs.toFixed(0)} ms\n`,
    )
  } finally {
    ac.abort()
    await provider.close()
    await proxy.close()
  }
})
