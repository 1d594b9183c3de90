// Subscribes to slotsChanged the way the React app does: Apollo Client with a
// GraphQLWsLink (graphql-ws) for subscriptions and an HttpLink for the rest,
// the access token in connectionParams. Prints one JSON line per event and
// exits after CARESLOT_EVENTS events (exit 2 on timeout, 1 on error).
//
// Environment: CARESLOT_URL (http://host:port), CARESLOT_TOKEN, CARESLOT_PROVIDER,
// CARESLOT_FROM, CARESLOT_TO, CARESLOT_EVENTS (default 1).
import { ApolloClient, HttpLink, InMemoryCache, gql, split } from '@apollo/client/core/index.js';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions/index.js';
import { getMainDefinition } from '@apollo/client/utilities/index.js';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    console.error(`missing ${name}`);
    process.exit(1);
  }
  return value;
};
const url = env('CARESLOT_URL');
const token = env('CARESLOT_TOKEN');
const wanted = Number(env('CARESLOT_EVENTS', '1'));

const wsClient = createClient({
  url: `${url.replace(/^http/, 'ws')}/graphql/ws`,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
  on: { closed: (event) => console.error(JSON.stringify({ closed: event.code, reason: event.reason })) },
});
const httpLink = new HttpLink({ uri: `${url}/graphql`, headers: { authorization: `Bearer ${token}` }, fetch });
const link = split(
  ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
  },
  new GraphQLWsLink(wsClient),
  httpLink,
);
const client = new ApolloClient({ link, cache: new InMemoryCache() });

const me = await client.query({ query: gql`{ me { role } }` });
let seen = 0;
const timer = setTimeout(() => {
  console.error(JSON.stringify({ timeout: true, seen }));
  process.exit(2);
}, 20000);

client
  .subscribe({
    query: gql`
      subscription ($providerId: UUID!, $from: DateTime!, $to: DateTime!) {
        slotsChanged(providerId: $providerId, from: $from, to: $to) { providerId start end status reason }
      }
    `,
    variables: { providerId: env('CARESLOT_PROVIDER'), from: env('CARESLOT_FROM'), to: env('CARESLOT_TO') },
  })
  .subscribe({
    next: (result) => {
      console.log(JSON.stringify(result.data.slotsChanged));
      seen += 1;
      if (seen >= wanted) {
        clearTimeout(timer);
        wsClient.dispose();
        process.exit(0);
      }
    },
    error: (error) => {
      console.error(JSON.stringify({ error: String(error) }));
      process.exit(1);
    },
  });

// The subscribe message is on its way once the socket is acknowledged; give the
// server a moment to attach it to the bus before telling the test to book.
wsClient.on('connected', () => {
  setTimeout(() => console.log(JSON.stringify({ ready: true, role: me.data.me.role })), 300);
});
