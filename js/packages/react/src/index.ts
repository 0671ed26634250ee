'use client';
// @sessionhub/react: React bindings of @sessionhub/client. SessionHubProvider
// (alias SocketProvider) holds one connection; the hooks read it through
// useSyncExternalStore with selections; the components are unstyled
// (optional stylesheet: '@sessionhub/react/styles.css'). Safe to import
// during server rendering: nothing touches window or WebSocket before the
// provider mounts in a browser.

export {
  SessionHubProvider,
  SocketProvider,
  useSessionHub,
  useSocket,
  useConnectionStatus,
  useSessionParticipants,
  useCursor,
  useBroadcast,
  shallowEqual,
} from './provider.js';
export type { SessionHubProviderProps, SessionHubValue, ConnectionStatusValue } from './provider.js';
export { ConnectionStatus, ParticipantsList, SessionConnection } from './components.js';
export type { ConnectionStatusProps, ParticipantsListProps, SessionConnectionProps } from './components.js';
export { SessionHubStore } from './store.js';
export type { ConnectionStatus as ConnectionStatusName, SessionHubSnapshot, StoreConfig } from './store.js';
export type { BroadcastData, Cursor, HubClient, HubClientOptions, Participant, ReconnectOptions, UserInfo } from '@sessionhub/client';
