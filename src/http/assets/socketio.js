// palisade demo page, Socket.IO flavour: the official socket.io-client (the
// global `io` of its browser bundle) against /socket.io/, with the client's
// default transports (long-polling, then WebSocket).
//
// Stable hooks (relied on by tests):
//   #status                     connecting | connected | disconnected
//   #transport                  the Engine.IO transport in use: polling | websocket
//   #no-bundle                  shown when the bundle did not load (socketio.client_bundle unset)
//   #login, #login-form, #login-username, #login-password, #login-submit, #login-error
//   #user / #username           "Logged in as <name>" after the server's user_authorized event
//   button[data-hero="<id>"]    one per hero, labelled with its display name; emits get_name
//   [data-hero-name-for="<id>"] textContent is exactly the hero's real name once known
//
// Credentials: GET /session tells whether the HttpOnly cookie holds a session
// (the handshake then carries it); otherwise the form's POST /login answers a
// token, sent in the CONNECT's `auth`. A refusal is the client's connect_error.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status');
  const transportEl = $('transport');
  const heroesEl = $('heroes');
  const loginSection = $('login');
  const loginForm = $('login-form');
  const loginError = $('login-error');
  let socket = null;

  function setStatus(state) {
    statusEl.textContent = state;
    statusEl.dataset.state = state;
    for (const b of heroesEl.querySelectorAll('button[data-hero]')) b.disabled = state !== 'connected';
  }

  // "ironMan" -> "Iron Man"
  function displayName(id) {
    const words = id.replace(/([a-z0-9])([A-Z])/g, '$1 $2').split(/[\s_-]+/);
    return words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
  }

  function showHeroes(ids) {
    heroesEl.replaceChildren();
    for (const id of ids) {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.hero = id;
      button.textContent = displayName(id);
      button.addEventListener('click', () => lookUp(id));
      const slot = document.createElement('span');
      slot.className = 'hero-name';
      slot.setAttribute('data-hero-name-for', id);
      li.append(button, ' ', slot);
      heroesEl.append(li);
    }
  }

  function lookUp(hero) {
    if (!socket) return;
    socket.timeout(10000).emit('get_name', { hero }, (err, reply) => {
      const slot = heroesEl.querySelector(`[data-hero-name-for="${CSS.escape(hero)}"]`);
      if (!slot) return;
      if (err) slot.textContent = '(no answer)';
      else if (reply && reply.hero_name) slot.textContent = reply.hero_name;
      else slot.textContent = `(${(reply && reply.code) || 'error'})`;
    });
  }

  function showLogin(message) {
    loginSection.hidden = false;
    loginError.hidden = !message;
    loginError.textContent = message || '';
  }

  function connect(auth) {
    if (socket) socket.close();
    setStatus('connecting');
    socket = window.io({ auth, reconnection: false });
    const engineName = () => (socket.io.engine ? socket.io.engine.transport.name : '');
    socket.on('connect', () => {
      loginSection.hidden = true;
      setStatus('connected');
      transportEl.textContent = engineName();
      socket.io.engine.on('upgrade', () => { transportEl.textContent = engineName(); });
      socket.timeout(10000).emit('list_heroes', {}, (err, reply) => {
        if (!err && reply && Array.isArray(reply.heroes)) showHeroes(reply.heroes);
      });
    });
    socket.on('user_authorized', (data) => {
      $('username').textContent = data.username;
      $('user').hidden = false;
    });
    socket.on('connect_error', (e) => {
      setStatus('disconnected');
      const code = e && e.data && e.data.code;
      showLogin(code === 'invalid_credentials' ? 'Wrong user name or password.'
        : code ? `The server refused the connection (${code}). Log in again.` : '');
    });
    socket.on('disconnect', () => setStatus('disconnected'));
  }

  loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const username = $('login-username').value;
    const password = $('login-password').value;
    let res;
    try {
      res = await fetch('/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password }),
      });
    } catch {
      showLogin('Cannot reach the server. Try again.');
      return;
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      showLogin(res.status === 401 ? 'Wrong user name or password.'
        : res.status === 429 ? 'Too many attempts; wait a minute.' : `Login failed (${body.error || res.status}).`);
      return;
    }
    $('login-password').value = '';
    connect({ token: body.token });
  });

  async function start() {
    if (typeof window.io !== 'function') {
      $('no-bundle').hidden = false;
      setStatus('disconnected');
      heroesEl.replaceChildren();
      return;
    }
    let session = null;
    try {
      session = await (await fetch('/session')).json();
    } catch { /* the form then */ }
    if (session && (session.authenticated || session.auth_required === false)) connect({});
    else showLogin('');
  }

  start();
})();
