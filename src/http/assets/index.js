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
//   #user / #username          shown after a user_authorized event
'use strict';

(function () {
  const PROTOCOL = 'palisade.v1';
  const BACKOFF_START_MS = 250;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_CAP_MS = 5000;
  const MAX_ERRORS_SHOWN = 8;

  const $ = (id) => document.getElementById(id);
  const statusEl = $('status');
  const retryEl = $('retry');
  const retryNowBtn = $('retry-now');
  const userEl = $('user');
  const usernameEl = $('username');
  const heroesEl = $('heroes');
  const lookupForm = $('lookup');
  const lookupInput = $('lookup-hero');
  const lookupSubmit = $('lookup-submit');
  const lookupResult = $('lookup-result');
  const errorsEl = $('errors');

  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

  let socket = null;
  let attempt = 0; // consecutive failed attempts since the last successful open
  let retryTimer = null;
  let countdownTimer = null;
  let nextId = 1;
  // id -> { kind: 'list' | 'hero' | 'lookup', hero?: string }
  let pending = new Map();

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
      userEl.hidden = false;
    } else {
      usernameEl.textContent = '';
      userEl.hidden = true;
    }
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

  function connect() {
    clearRetry();
    setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl, [PROTOCOL]);
    } catch (_) {
      setStatus('disconnected');
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.addEventListener('open', () => {
      if (socket !== ws) return;
      attempt = 0;
      setStatus('connected');
      send('list', 'list_heroes');
    });
    ws.addEventListener('message', (ev) => {
      if (socket === ws) onMessage(ev);
    });
    ws.addEventListener('close', () => {
      if (socket !== ws) return;
      socket = null;
      pending = new Map();
      showUser(null);
      for (const el of heroesEl.querySelectorAll('.loading')) el.classList.remove('loading');
      setStatus('disconnected');
      scheduleReconnect();
    });
    // 'error' is always followed by 'close', which does the work.
  }

  retryNowBtn.addEventListener('click', () => {
    if (socket === null) {
      attempt = 0;
      connect();
    }
  });

  lookupForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const hero = lookupInput.value.trim();
    if (hero === '') return;
    lookupResult.textContent = '';
    if (!send('lookup', 'get_name', { hero }, hero)) lookupResult.textContent = 'not connected';
  });

  setStatus('connecting');
  connect();
})();
