/**
 * The demo is the main job: it must keep working. Runs examples/demo.ts as a user would (a child
 * process) and checks what it reports.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { withDeadline } from '../support/wait.js'

const DEMO = fileURLToPath(new URL('../../examples/demo.ts', import.meta.url))

it('runs the demo: even round-robin, least-loaded avoids the slow instance, live removal without failures', async () => {
  const proc = spawn(process.execPath, ['--import', 'tsx', DEMO], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WAYFIND_DEMO_QUIET: '1' },
  })
  let out = ''
  let err = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  const [code] = (await withDeadline(once(proc, 'exit'), 60_000, 'the demo to finish')) as [
    number | null,
  ]
  expect(err).toBe('')
  const line = out.split('\n').find((l) => l.startsWith('demo summary '))
  expect(line, out).toBeDefined()
  const summary = JSON.parse(line!.slice('demo summary '.length)) as {
    failed: number
    roundRobinEven: boolean
    leastLoadedSlowShare: number
    changeSeen: boolean
    removedGotTraffic: number
  }
  expect(summary.failed).toBe(0)
  expect(summary.roundRobinEven).toBe(true)
  // One of three instances answers 40 ms slower: least-loaded must give it well under a third.
  expect(summary.leastLoadedSlowShare).toBeLessThan(0.25)
  expect(summary.changeSeen).toBe(true)
  expect(summary.removedGotTraffic).toBe(0)
  expect(code).toBe(0)
})
