/**
 * Never hang: a process that watched, registered and resolved on etcd exits by itself after
 * close() (no timer, stream or socket of ours keeps it alive), and its key is gone.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { EtcdServer } from '../../support/etcd.js'
import { withDeadline } from '../../support/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/exit-child.ts', import.meta.url))
let server: EtcdServer

beforeAll(async () => {
  server = await EtcdServer.start()
})

afterAll(async () => {
  await server.remove()
})

it.each(['close', 'deregister'])('exits by itself after %s', async (mode) => {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, server.host, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  try {
    const [code] = (await withDeadline(
      once(child, 'exit'),
      30_000,
      `the child to exit (stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)})`,
    )) as [number | null]
    expect({ code, out, err }).toEqual({ code: 0, out: 'ready 1\nclosed\n', err: '' })
    const left = await server.client().getAll().prefix('/exit/').keys()
    expect(left).toEqual([])
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
  }
})
