/**
 * https://<service>: the Host header stays the logical name, SNI follows it by default (undici),
 * and `servername` points certificate checks at the name the instance's certificate carries.
 */
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { WayfindDispatcher } from '../../src/dispatcher/dispatcher.js'
import { createInstance } from '../../src/instance.js'
import { makeTestCerts, type TestCerts } from '../support/certs.js'
import { FakeDirectory } from './dispatcher-support.js'

let certs: TestCerts
let server: Server
let port = 0

beforeAll(async () => {
  certs = makeTestCerts()
  server = createServer({ key: certs.serverKey, cert: certs.serverCert }, (req, res) => {
    const socket: unknown = req.socket
    res.end(JSON.stringify({ host: req.headers.host, sni: (socket as TLSSocket).servername }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
  certs.remove()
})

function directory(): FakeDirectory {
  const dir = new FakeDirectory()
  dir.set('payments', [createInstance({ id: 'a', service: 'payments', host: '127.0.0.1', port })])
  return dir
}

describe('https routing', () => {
  it('checks the certificate against the logical name by default (and fails when it does not match)', async () => {
    const d = new WayfindDispatcher(directory(), {
      pool: { connect: { ca: certs.ca } },
      retry: false,
    })
    try {
      await expect(request('https://payments/x', { dispatcher: d })).rejects.toThrow(/altnames/)
    } finally {
      await d.destroy()
    }
  })

  it('uses the servername option for SNI and the check, keeping Host', async () => {
    const d = new WayfindDispatcher(directory(), {
      pool: { connect: { ca: certs.ca } },
      servername: (service, instance) =>
        service === 'payments' && instance.host === '127.0.0.1' ? 'localhost' : undefined,
    })
    try {
      const res = await request('https://payments/x', { dispatcher: d })
      expect(await res.body.json()).toEqual({ host: 'payments', sni: 'localhost' })
    } finally {
      await d.destroy()
    }
  })
})
