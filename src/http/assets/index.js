// palisade demo page: talks the hero protocol over one WebSocket.
//
// Stable hooks (relied on by tests):
//   #status                    textContent and data-state: connecting | connected | disconnected
//   button[data-hero="<id>"]   one per hero from list_heroes; sends get_name
//   [data-hero-name-for="<id>"] textContent is exactly the hero's real name once known
//   #lookup / #lookup-hero     free-text lookup form
//   #lookup-result             result of the free-text lookup
//   #errors                    one <li> per server error event: "<code>: <message>"
//   #retry                     when the next reconnect attempt happens
//   #user / #username          "Logged in as <name>", shown after a user_authorized event
//   #login                     login section: shown when the server refuses the WebSocket
//                              (no or bad credentials) or the session expired; hidden while connected
//   #login-form, #login-username, #login-password, #login-submit   the login form (POST /login)
//   #login-error               why the last login failed (wrong password, rate limit, ...)
//   #login-notice              why the form is shown (e.g. the session expired)
//   #logout                    "Log out" (in #user): POST /logout, then the login form
//   #feed                      the live feed: one <li> per look-up published on the channel
//                              `lookups` (newest first): "<user> looked up <hero>: <real name>";
//                              data-live="true" once the server confirmed the subscription
//
// Credentials: POST /login answers with a token and an HttpOnly cookie; the
// browser sends the cookie with the WebSocket handshake. The token itself is
// kept only in a variable of this closure (never in web storage). On load the
// page asks GET /session first, so a visit without a session shows the form
// without a refused WebSocket attempt. POST /logout revokes the token and
// clears the cookie; the server then closes the WebSocket (1008 "logged out").
'use strict';

(function () {
  const PROTOCOL = 'palisade.v1';
  const BACKOFF_START_MS = 250;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_CAP_MS = 5000;
  const MAX_ERRORS_SHOWN = 8;
  // Close 1008 with one of these reasons: the session ended, and reconnecting
  // with the same cookie would be refused.
  const SESSION_ENDED = {
    'token expired': 'expired',
    'logged out': 'loggedOut',
    'credentials revoked': 'revoked',
  };
  const MESSAGES = {
    loginFirst: 'The server wants a login before it opens the WebSocket.',
    expired: 'Your session expired. Log in again.',
    loggedOut: 'You logged out.',
    revoked: 'Your access was revoked (user removed or password changed). Log in again.',
    logoutFailed: 'Logging out failed. Try again.',
    refused: 'The server refused the connection. Log in again.',
    wrongPassword: 'Wrong user name or password.',
    incomplete: 'Enter a user name and a password.',
    unreachable: 'Cannot reach the server. Try again.',
  };

  const $ = (id) => document.getElementById(id);
  const statusEl = $('status');
  const retryEl = $('retry');
  const retryNowBtn = $('retry-now');
  const userEl = $('user');
  const usernameEl = $('username');
  const sessionEndEl = $('session-end');
  const heroesEl = $('heroes');
  const lookupForm = $('lookup');
  const lookupInput = $('lookup-hero');
  const lookupSubmit = $('lookup-submit');
  const lookupResult = $('lookup-result');
  const errorsEl = $('errors');
  const feedEl = $('feed');
  const FEED_MAX = 20;
  const loginSection = $('login');
  const loginForm = $('login-form');
  const loginUser = $('login-username');
  const loginPassword = $('login-password');
  const loginSubmit = $('login-submit');
  const loginError = $('login-error');
  const loginNotice = $('login-notice');
  const logoutBtn = $('logout');

  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

  let socket = null;
  let attempt = 0; // consecutive failed attempts since the last successful open
  let retryTimer = null;
  let countdownTimer = null;
  let nextId = 1;
  // id -> { kind: 'list' | 'hero' | 'lookup', hero?: string }
  let pending = new Map();
  let generation = 0; // bumped by every connect(), so late answers of older attempts are ignored
  // The session from the last successful login of this page: { token, expiresAt }.
  // Memory only; the handshake uses the HttpOnly cookie set by the same answer.
  let session = null;
  let loginInFlight = false;
  let loginBlockedTimer = null;
  let loggingOut = false;

  function allocId() {
    const id = nextId;
    nextId = nextId >= 0xffffffff ? 1 : nextId + 1;
    return id;
  }

  function setStatus(state) {
    statusEl.textContent = state;
    statusEl.dataset.state = state;
    document.body.dataset.connection = state;
    const connected = state === 'connected';
    for (const b of heroesEl.querySelectorAll('button[data-hero]')) b.disabled = !connected;
    lookupSubmit.disabled = !connected;
  }

  function send(kind, event, data, hero) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    const id = allocId();
    const msg = { event, id };
    if (data !== undefined) msg.data = data;
    pending.set(id, { kind, hero });
    socket.send(JSON.stringify(msg));
    return true;
  }

  // ---- rendering ---------------------------------------------------------

  // A look-up anyone made, published on `lookups`: text only, newest first.
  function showLookup(d) {
    if (!d || typeof d.user !== 'string' || typeof d.hero !== 'string' || typeof d.hero_name !== 'string') return;
    const li = document.createElement('li');
    li.textContent = d.user + ' looked up ' + d.hero + ': ' + d.hero_name;
    feedEl.prepend(li);
    while (feedEl.children.length > FEED_MAX) feedEl.lastElementChild.remove();
  }

  function nameSlot(hero) {
    for (const el of heroesEl.querySelectorAll('[data-hero-name-for]')) {
      if (el.getAttribute('data-hero-name-for') === hero) return el;
    }
    return null;
  }

  function renderHeroes(heroes) {
    heroesEl.replaceChildren();
    if (heroes.length === 0) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'the server knows no heroes';
      heroesEl.append(li);
      return;
    }
    const connected = statusEl.dataset.state === 'connected';
    for (const hero of heroes) {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.hero = hero;
      button.textContent = hero;
      button.disabled = !connected;
      const slot = document.createElement('output');
      slot.setAttribute('data-hero-name-for', hero);
      slot.className = 'hero-name';
      button.addEventListener('click', () => {
        if (send('hero', 'get_name', { hero }, hero)) slot.classList.add('loading');
      });
      li.append(button, slot);
      heroesEl.append(li);
    }
  }

  function showError(code, message) {
    const li = document.createElement('li');
    const c = document.createElement('code');
    c.textContent = String(code);
    li.append(c, document.createTextNode(': ' + String(message)));
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString();
    li.append(' ', time);
    errorsEl.prepend(li);
    while (errorsEl.children.length > MAX_ERRORS_SHOWN) errorsEl.lastElementChild.remove();
  }

  function showUser(username) {
    if (typeof username === 'string' && username !== '') {
      usernameEl.textContent = username;
      // The end of the session is known when this page logged in (not with an older cookie).
      const end = session !== null && session.expiresAt !== null ? new Date(session.expiresAt) : null;
      sessionEndEl.textContent = end ? ' (session ends at ' + end.toLocaleTimeString() + ')' : '';
      userEl.hidden = false;
    } else {
      usernameEl.textContent = '';
      sessionEndEl.textContent = '';
      userEl.hidden = true;
    }
  }

  // ---- login ---------------------------------------------------------------

  function showLogin(notice) {
    clearRetry();
    loginNotice.textContent = notice || '';
    loginNotice.hidden = !notice;
    const wasHidden = loginSection.hidden;
    loginSection.hidden = false;
    retryNowBtn.hidden = false; // a manual retry stays possible (e.g. after logging in elsewhere)
    if (wasHidden) (loginUser.value === '' ? loginUser : loginPassword).focus();
  }

  function hideLogin() {
    loginSection.hidden = true;
    loginNotice.hidden = true;
    loginNotice.textContent = '';
    showLoginError('');
    loginPassword.value = '';
  }

  function showLoginError(text) {
    loginError.textContent = text;
    loginError.hidden = text === '';
  }

  // Seconds from a Retry-After header (delta-seconds or an HTTP date); `fallback` otherwise.
  function retryAfterSeconds(res, fallback) {
    const v = (res.headers.get('Retry-After') || '').trim();
    if (/^\d+$/.test(v)) return Math.max(1, parseInt(v, 10));
    const at = Date.parse(v);
    if (!Number.isNaN(at)) return Math.max(1, Math.ceil((at - Date.now()) / 1000));
    return fallback;
  }

  // Shows `prefix` with a countdown and keeps the submit button disabled until it ends.
  function blockLogin(prefix, seconds) {
    if (loginBlockedTimer !== null) clearInterval(loginBlockedTimer);
    const due = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((due - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(loginBlockedTimer);
        loginBlockedTimer = null;
        loginSubmit.disabled = loginInFlight;
        showLoginError('You can try to log in again now.');
        return;
      }
      showLoginError(prefix + ' Try again in ' + left + ' s.');
    };
    loginSubmit.disabled = true;
    tick();
    loginBlockedTimer = setInterval(tick, 1000);
  }

  async function logIn(username, password) {
    loginInFlight = true;
    loginSubmit.disabled = true;
    showLoginError('');
    let res;
    let body = null;
    try {
      res = await fetch('/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password }),
        credentials: 'same-origin',
        cache: 'no-store',
      });
      try {
        body = await res.json();
      } catch (_) {
        body = null;
      }
    } catch (_) {
      res = null;
    } finally {
      loginInFlight = false;
      loginSubmit.disabled = loginBlockedTimer !== null;
    }
    if (res === null) {
      showLoginError(MESSAGES.unreachable);
      return;
    }
    if (res.status === 200 && body && typeof body.token === 'string') {
      const ttl = typeof body.expires_in === 'number' ? body.expires_in : null;
      session = { token: body.token, expiresAt: ttl === null ? null : Date.now() + ttl * 1000 };
      loginPassword.value = '';
      showLoginError('');
      loginNotice.hidden = true;
      if (socket !== null && socket.readyState !== WebSocket.OPEN) {
        // An attempt started before the cookie existed: replace it.
        const old = socket;
        socket = null;
        old.close();
      }
      if (socket === null) {
        attempt = 0;
        connect();
      }
      return;
    }
    switch (res.status) {
      case 401:
        loginPassword.value = '';
        loginPassword.focus();
        showLoginError(MESSAGES.wrongPassword);
        break;
      case 429:
        blockLogin('Too many login attempts.', retryAfterSeconds(res, 60));
        break;
      case 503:
        blockLogin('The server is busy.', retryAfterSeconds(res, 1));
        break;
      case 400:
        showLoginError(MESSAGES.incomplete);
        break;
      default:
        showLoginError('Login failed (HTTP ' + res.status + ').');
        break;
    }
  }

  // Ends the session: the server revokes the token, clears the cookie and
  // closes this page's WebSocket (1008 "logged out").
  async function logOut() {
    if (loggingOut) return;
    loggingOut = true;
    logoutBtn.disabled = true;
    let res = null;
    try {
      res = await fetch('/logout', { method: 'POST', credentials: 'same-origin', cache: 'no-store' });
    } catch (_) {
      res = null;
    } finally {
      loggingOut = false;
      logoutBtn.disabled = false;
    }
    // 401: there was no valid session to end (the cookie is cleared anyway).
    if (res === null || (res.status !== 200 && res.status !== 401)) {
      showError('logout', MESSAGES.logoutFailed);
      return;
    }
    session = null;
    if (socket !== null) {
      // The server closes it; this is for a connection it did not know as ours.
      const old = socket;
      socket = null;
      old.close(1000, 'logged out');
      pending = new Map();
      showUser(null);
      setStatus('disconnected');
    }
    showLogin(MESSAGES.loggedOut);
  }

  // Asks the server whether this page has a session before opening the
  // WebSocket: without one the login form shows straight away, and the
  // browser logs no refused handshake. `onSession(known)` gets the answer, or
  // null when the server cannot be reached.
  function checkSession(onSession) {
    fetch('/session', { credentials: 'same-origin', cache: 'no-store' })
      .then((res) => (res.ok ? res.json() : null))
      .then((body) => onSession(body && typeof body === 'object' ? body : null), () => onSession(null));
  }

  function start() {
    setStatus('connecting');
    const gen = generation;
    checkSession((s) => {
      if (gen !== generation || socket !== null) return;
      if (s !== null && s.auth_required === true && s.authenticated !== true) {
        setStatus('disconnected');
        showLogin(MESSAGES.loginFirst);
      } else if (s === null) {
        setStatus('disconnected');
        scheduleReconnect();
      } else {
        connect();
      }
    });
  }

  // ---- protocol ----------------------------------------------------------

  function onMessage(ev) {
    if (typeof ev.data !== 'string') return; // the hero protocol is text only
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.event !== 'string') return;
    const data = msg.data && typeof msg.data === 'object' ? msg.data : {};
    const req = typeof msg.id === 'number' ? pending.get(msg.id) : undefined;
    if (req) pending.delete(msg.id);

    switch (msg.event) {
      case 'heroes':
        if (Array.isArray(data.heroes)) {
          renderHeroes(data.heroes.filter((h) => typeof h === 'string'));
        }
        break;
      case 'name': {
        if (typeof data.hero !== 'string' || typeof data.hero_name !== 'string') break;
        const slot = nameSlot(data.hero);
        if (slot) {
          slot.classList.remove('loading');
          slot.textContent = data.hero_name;
        }
        if (req && req.kind === 'lookup') lookupResult.textContent = data.hero + ' is ' + data.hero_name;
        break;
      }
      case 'error': {
        const code = typeof data.code === 'string' ? data.code : 'error';
        const message = typeof data.message === 'string' ? data.message : '';
        showError(code, message);
        if (req && req.kind === 'lookup') lookupResult.textContent = 'not found (' + code + ')';
        if (req && req.kind === 'hero') {
          const slot = nameSlot(req.hero);
          if (slot) slot.classList.remove('loading');
        }
        break;
      }
      case 'user_authorized':
        showUser(data.username);
        break;
      case 'subscribed':
        if (data.channel === 'lookups') feedEl.dataset.live = 'true';
        break;
      case 'publication':
        if (data.channel === 'lookups') showLookup(data.data);
        break;
      default:
        // Events this page does not know yet are ignored.
        break;
    }
  }

  // ---- connection and reconnection ---------------------------------------

  function clearRetry() {
    if (retryTimer !== null) clearTimeout(retryTimer);
    if (countdownTimer !== null) clearInterval(countdownTimer);
    retryTimer = null;
    countdownTimer = null;
    retryEl.textContent = '';
    retryNowBtn.hidden = true;
  }

  function backoffDelay(n) {
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * Math.pow(BACKOFF_FACTOR, n));
    // Jitter: anywhere in [base/2, base], so many pages do not retry in step.
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  function scheduleReconnect() {
    clearRetry();
    const delay = backoffDelay(attempt);
    attempt += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, due - Date.now());
      retryEl.textContent = 'retrying in ' + (left / 1000).toFixed(1) + ' s (attempt ' + attempt + ')';
    };
    tick();
    countdownTimer = setInterval(tick, 100);
    retryTimer = setTimeout(connect, delay);
    retryNowBtn.hidden = false;
  }

  // A connection that failed before it opened: either the server is down (retry
  // with backoff) or it refused the handshake, which a page cannot tell apart
  // (the browser hides the HTTP status, e.g. 401). A plain request settles it:
  // if the server answers, it refused us, so show the login form and stop.
  function afterRefusal(gen) {
    retryEl.textContent = '';
    const settle = (reachable) => {
      if (gen !== generation || socket !== null) return; // superseded by a newer attempt
      if (reachable) {
        showLogin(session !== null ? MESSAGES.refused : MESSAGES.loginFirst);
      } else {
        scheduleReconnect();
      }
    };
    checkSession((s) => settle(s !== null));
  }

  function connect() {
    clearRetry();
    setStatus('connecting');
    generation += 1;
    const gen = generation;
    let ws;
    try {
      ws = new WebSocket(wsUrl, [PROTOCOL]);
    } catch (_) {
      setStatus('disconnected');
      scheduleReconnect();
      return;
    }
    socket = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      if (socket !== ws) return;
      opened = true;
      attempt = 0;
      hideLogin();
      setStatus('connected');
      send('list', 'list_heroes');
      send('subscribe', 'subscribe', { channel: 'lookups' });
    });
    ws.addEventListener('message', (ev) => {
      if (socket === ws) onMessage(ev);
    });
    ws.addEventListener('close', (ev) => {
      if (socket !== ws) return;
      socket = null;
      pending = new Map();
      showUser(null);
      for (const el of heroesEl.querySelectorAll('.loading')) el.classList.remove('loading');
      setStatus('disconnected');
      const ended = ev.code === 1008 ? SESSION_ENDED[ev.reason] : undefined;
      if (opened && ended !== undefined) {
        // The server ended the session: reconnecting with the same cookie would be refused.
        session = null;
        showLogin(MESSAGES[ended]);
      } else if (opened) {
        scheduleReconnect();
      } else {
        afterRefusal(gen);
      }
    });
    // 'error' is always followed by 'close', which does the work.
  }

  logoutBtn.addEventListener('click', () => {
    logOut();
  });

  retryNowBtn.addEventListener('click', () => {
    if (socket === null) {
      attempt = 0;
      connect();
    }
  });

  loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (loginInFlight || loginSubmit.disabled) return;
    const username = loginUser.value.trim();
    const password = loginPassword.value;
    if (username === '' || password === '') {
      showLoginError(MESSAGES.incomplete);
      return;
    }
    logIn(username, password);
  });

  lookupForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const hero = lookupInput.value.trim();
    if (hero === '') return;
    lookupResult.textContent = '';
    if (!send('lookup', 'get_name', { hero }, hero)) lookupResult.textContent = 'not connected';
  });

  start();
})();
