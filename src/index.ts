/**
 * wayfind: call services by name from Node.js, with client-side load balancing over undici,
 * discovery from Consul or etcd, and self-registration.
 *
 * This file is the public API, and the only barrel: explicit named exports, nothing internal.
 * Importing it has no side effects.
 */

// Client
export { createWayfind, type Wayfind } from './client.js'
export { DEFAULTS, type StrategyName, type WayfindOptions } from './options.js'
export type { ResolveOptions } from './core/resolve-options.js'

// Registries
export {
  consul,
  type ConsulRegistry,
  type ConsulRegistryStats,
} from './registry/consul/provider.js'
export type {
  ConsulRegistryOptions,
  ConsulTlsOptions,
  ConsulAddressKind,
  ConsulConsistency,
} from './registry/consul/options.js'
export { etcd } from './registry/etcd/provider.js'
export type { EtcdRegistryOptions, EtcdAuth, EtcdCredentials } from './registry/etcd/options.js'
export {
  defaultEtcdCodec,
  type EtcdCodec,
  type EtcdEntry,
  type DecodedInstance,
} from './registry/etcd/mapping.js'
export {
  memoryRegistry,
  type MemoryRegistry,
  type MemoryRegistryOptions,
  type MemoryInstanceInit,
} from './registry/memory.js'
export type {
  RegistryProvider,
  ServiceSnapshot,
  WatchListener,
  WatchOptions,
} from './registry/provider.js'

// Instances
export {
  createInstance,
  diffInstances,
  hostPort,
  instanceProblem,
  sameInstance,
  type Instance,
  type InstanceDiff,
  type InstanceInit,
  type InstanceStatus,
} from './instance.js'

// Balancing
export { roundRobin } from './balancer/round-robin.js'
export { leastLoaded, type LeastLoadedOptions } from './balancer/least-loaded.js'
export { random } from './balancer/random.js'
export {
  EMPTY_PICKER,
  failingPicker,
  type LoadRecord,
  type LoadRecords,
  type PickContext,
  type Picker,
  type PickFail,
  type PickOk,
  type PickQueue,
  type PickResult,
  type Strategy,
  type StrategyContext,
} from './balancer/strategy.js'

// Dispatching
export type { DispatcherOptions, OutlierOptions, RetryOptions } from './dispatcher/options.js'
export type { InstanceStats, ServiceStats } from './dispatcher/dispatcher.js'

// Registration
export {
  startHealthServer,
  type HealthServer,
  type HealthServerOptions,
} from './registration/health-server.js'
export type {
  HealthHandler,
  HealthHandlerOptions,
  HealthReport,
  HealthRequest,
  HealthResponse,
} from './registration/health-handler.js'
export type { DrainableServer } from './registration/server-drain.js'
export type {
  HttpCheck,
  RegisterOptions,
  Registration,
  RegistrationHandle,
  RegistrationState,
  TtlCheck,
  NormalizedRegistration,
  NormalizedHttpCheck,
  NormalizedTtlCheck,
  RegisterContext,
  RegistrationSession,
} from './registration/contract.js'

// Events
export type {
  ChangeEvent,
  EjectionEvent,
  ErrorEvent,
  RegistrationEvent,
  WayfindEvents,
  WayfindEventsApi,
} from './events.js'

// Errors
export {
  ClosedError,
  ErrorCode,
  InvalidOptionError,
  InvalidResponseError,
  isWayfindError,
  LeaseLostError,
  LimitExceededError,
  MalformedInstanceError,
  type MalformedEntry,
  NoInstancesError,
  RegistrationConflictError,
  RegistrationError,
  RegistryUnavailableError,
  ResolveTimeoutError,
  WayfindError,
  type WayfindErrorOptions,
} from './errors.js'

// Time (for custom providers and strategies, and fake clocks in tests)
export { systemClock, type Clock, type TimerHandle } from './core/clock.js'
