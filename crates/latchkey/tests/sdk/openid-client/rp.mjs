// A relying party as an application would write it with openid-client: everything from the
// issuer's discovery document, the authorization code flow with PKCE, nonce and state, the
// token response checked by the library (id_token signature, iss, aud, nonce, the iss of the
// authorization response), then userinfo. What only a person does (type an e-mail, open the
// link) the test answers on stdin: it is given the authorization URL and answers with the URL
// the browser came back to.
import openid from "openid-client";
import { createInterface } from "node:readline";

const { Issuer, generators } = openid;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async (what) => {
  console.log(what);
  const { value } = await lines.next();
  return value;
};

const issuer = await Issuer.discover(process.env.ISSUER);
const client = new issuer.Client({
  client_id: process.env.CLIENT_ID,
  client_secret: process.env.CLIENT_SECRET,
  redirect_uris: [process.env.CALLBACK],
  response_types: ["code"],
});
const code_verifier = generators.codeVerifier();
const nonce = generators.nonce();
const state = generators.state();
const url = client.authorizationUrl({
  scope: "openid email",
  code_challenge: generators.codeChallenge(code_verifier),
  code_challenge_method: "S256",
  nonce,
  state,
});
const back = await ask(`AUTHORIZE ${url}`);
const params = client.callbackParams(back);
const tokens = await client.callback(process.env.CALLBACK, params, { code_verifier, nonce, state });
const claims = tokens.claims();
console.log(`CLAIMS ${JSON.stringify(claims)}`);
const info = await client.userinfo(tokens);
console.log(`USERINFO ${JSON.stringify(info)}`);
console.log("OK");
// The reader of stdin would keep the program alive.
process.exit(0);
