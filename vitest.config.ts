import { defineConfig } from 'vitest/config'

// Two projects: `unit` is pure and fast (threads); `integration` talks to real servers over
// loopback sockets (etcd processes, the Consul test server, node:http instances) and runs in
// forks so that a misbehaving test cannot take the others' event loop with it.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          pool: 'threads',
          testTimeout: 10_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: [
            'test/integration/**/*.test.ts',
            'test/e2e/**/*.test.ts',
            'test/chaos/**/*.test.ts',
          ],
          pool: 'forks',
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
})
