// The classroom example: the platform's layout with SessionHubProvider at
// the top, the three components, and a code area that sends the caret.
// Query parameters: hub (the WebSocket URL; default ws://<page host name>:8080/ws),
// session, name, role (instructor or learner).
import { StrictMode, useCallback, useState } from 'react';
import type { FormEvent, ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import {
  ConnectionStatus,
  ParticipantsList,
  SessionConnection,
  SocketProvider,
  useSessionParticipants,
  useSocket,
} from '@sessionhub/react';

const CODE = `package main

import "fmt"

func main() {
\tfmt.Println("hello, class")
}
`;

const params = new URLSearchParams(location.search);
const hubURL = params.get('hub') || `ws://${location.hostname}:8080/ws`;

/** The code area: every caret move goes to the others (the client throttles it). */
function CodeArea(): ReactNode {
  const { updateCursor } = useSocket();
  const send = useCallback(
    (t: HTMLTextAreaElement) => {
      const before = t.value.slice(0, t.selectionStart);
      const lines = before.split('\n');
      updateCursor({ line: lines.length - 1, column: lines[lines.length - 1].length, file: 'main.go' });
    },
    [updateCursor],
  );
  return (
    <textarea
      id="code"
      defaultValue={CODE}
      spellCheck={false}
      onSelect={(e) => send(e.currentTarget)}
      onKeyUp={(e) => send(e.currentTarget)}
      onClick={(e) => send(e.currentTarget)}
    />
  );
}

/** The others' carets, by name: re-renders on cursor moves only. */
function Carets(): ReactNode {
  const carets = useSessionParticipants(
    (ps, selfId) => ps.filter((p) => p.userId !== selfId && p.cursor).map((p) => `${p.name} ${p.cursor!.line + 1}:${p.cursor!.column + 1}`),
  );
  return (
    <ul className="carets" id="carets">
      {carets.map((c) => (
        <li key={c}>{c}</li>
      ))}
    </ul>
  );
}

function Classroom({ session, name, role }: { session: string; name: string; role: 'instructor' | 'learner' }): ReactNode {
  return (
    <SocketProvider url={hubURL} sessionId={session} userInfo={{ name, role }} reconnect={{ maxAttempts: 0 }} options={{ activity: true }}>
      <header>
        <h1>Classroom · {session}</h1>
        <ConnectionStatus />
        <ConnectionStatus compact />
      </header>
      <main>
        <section>
          <CodeArea />
          <Carets />
        </section>
        <aside>
          <SessionConnection />
          <h2>Participants</h2>
          <ParticipantsList empty={<p>Nobody yet.</p>} />
        </aside>
      </main>
    </SocketProvider>
  );
}

function App(): ReactNode {
  const [who, setWho] = useState(() => {
    const name = params.get('name');
    return name ? { name, session: params.get('session') || 'demo', role: params.get('role') === 'instructor' ? 'instructor' as const : 'learner' as const } : null;
  });
  if (who) return <Classroom {...who} />;
  const submit = (e: FormEvent<HTMLFormElement>): void => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    setWho({ name: String(f.get('name')), session: String(f.get('session')), role: f.get('role') === 'instructor' ? 'instructor' : 'learner' });
  };
  return (
    <form onSubmit={submit}>
      <input name="name" placeholder="Your name" required maxLength={64} />
      <input name="session" defaultValue="demo" required />
      <select name="role" defaultValue="learner">
        <option value="learner">learner</option>
        <option value="instructor">instructor</option>
      </select>
      <button type="submit">Join</button>
    </form>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
