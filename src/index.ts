/** Public API of submarine-cluster. */
export { ClusterServer, type ClusterServerOptions } from '../actors/cluster-server.ts';
export { RaftNode, type RaftNodeOptions, type NodeStatus } from '../actors/node.ts';
export { ClusterClient, type ClusterClientOptions, type MemberStatus, type Watcher, type WatchOptions } from './client.ts';
export { ClusterMeta, ClusterMetaType, metaKey, type ServerMeta, type InterpreterMeta } from './meta.ts';
export { loadConfig, ConfigError, type ClusterConfig } from './config.ts';
export { startLocalCluster, type LocalCluster } from './local-cluster.ts';
export * from './errors.ts';
export type { KeyValue, MetaCommand, MetaResult, WatchEvent } from './sm/metadata.ts';
