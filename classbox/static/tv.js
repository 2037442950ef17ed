/* The classroom TV page: show one room of the box and follow it, driven by a TV remote's D-pad.
 *
 * Plain ES2017 without optional chaining or other recent syntax: cheap Android TV boxes run old
 * Chromium WebViews. No framework and no build step; the CSP allows only this file as script.
 *
 * Two kinds of screens share one stack. Browsing the catalogue (home → grades → subjects → lessons →
 * lesson) is this TV's own business. What the room shows — a lesson's video, a page of a document —
 * lives on the box: the TV long-polls the room's state and follows it, and its own keys there become
 * room commands, so every TV and phone of the room moves together. At most one room screen (player
 * or document) sits on top of the stack. Escape, Backspace or a remote's Back key pops one browse
 * screen (closing an overlay first); on a room screen it is a command (stop, close the document).
 * Each browse screen keeps the index of its focused tile so that going back lands where the teacher was.
 */
(function () {
  'use strict';

  var body = document.body;
  var BOX_URL = body.getAttribute('data-box-url') || location.href;

  var LEVELS = [
    { facet: 'section', screen: 'home', heading: '请选择栏目' },
    { facet: 'grade', screen: 'grades', heading: '请选择年级' },
    { facet: 'subject', screen: 'subjects', heading: '请选择学科' }
  ];
  var DOCUMENT_ROLES = ['task_sheet', 'exercise', 'courseware', 'lesson_plan', 'textbook'];
  var ROLE_NAMES = {
    video: '视频',
    task_sheet: '学习任务单',
    exercise: '课后练习',
    courseware: '课件',
    lesson_plan: '教学设计',
    textbook: '教材',
    cover: '封面'
  };
  var PATH_LEVELS = ['stage', 'grade', 'subject', 'edition', 'volume', 'unit', 'lesson', 'period'];
  var FETCH_TIMEOUT_MS = 15000;
  var COMMAND_TIMEOUT_MS = 8000;
  var POLL_WAIT_S = 25;             // the box holds a state request this long when nothing changes
  var POLL_TIMEOUT_MS = 40000;      // ... so an answer later than this means the connection is gone
  var BACKOFF_MAX_MS = 10000;       // a TV keeps asking at least this often while the box is away
  var CODE_REFRESH_MS = 600000;     // the room code changes at midnight: ask again every 10 minutes
  var TICK_MS = 250;
  var REPORT_EVERY_S = 5;           // tell the box where the video is, so it waits for a screen that stalled
  var DRIFT_S = 1;                  // a playing video further than this from the room's position seeks to it
  var STILL_S = 0.04;               // a paused video this close to the room's position is left alone
  var SEEK_STEP_S = 10;
  var UI_HIDE_MS = 4000;
  var STORE_ROOM = 'classbox.tv.room';
  var STORE_CLIENT = 'classbox.tv.client';
  var STORE_N = 'classbox.tv.n';

  function $(id) { return document.getElementById(id); }

  var main = $('main');
  var crumbs = $('crumbs');
  var backButton = $('back-button');
  var loading = $('loading');
  var message = $('message');
  var playerLayer = $('player');
  var video = $('video');
  var docLayer = $('document');
  var docImage = $('doc-image');
  var roomPanel = $('room-panel');

  var stack = [];          // screens, the last one shown
  var loadToken = 0;       // bumps on every navigation so late answers are dropped
  var loadingTimer = null;
  var messageState = null; // the message's focus group: {items, index, onBack}
  var docPages = {};       // document url → page index last shown

  // ------------------------------------------------------------------ small helpers

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function copy(obj) {
    var out = {};
    for (var k in obj) if (Object.prototype.hasOwnProperty.call(obj, k)) out[k] = obj[k];
    return out;
  }

  function query(filters) {
    var parts = [];
    for (var k in filters) {
      if (Object.prototype.hasOwnProperty.call(filters, k)) {
        parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(filters[k]));
      }
    }
    return parts.length ? '?' + parts.join('&') : '';
  }

  /* Return the value of a parameter of this page's address, or null. */
  function pageParam(name) {
    var pairs = location.search.replace(/^\?/, '').split('&');
    for (var i = 0; i < pairs.length; i++) {
      var eq = pairs[i].indexOf('=');
      var key = eq < 0 ? pairs[i] : pairs[i].slice(0, eq);
      if (key !== name) continue;
      try {
        return decodeURIComponent((eq < 0 ? '' : pairs[i].slice(eq + 1)).replace(/\+/g, ' '));
      } catch (e) {
        return null;
      }
    }
    return null;
  }

  function twoDigits(n) { return (n < 10 ? '0' : '') + n; }

  /* Format seconds as 03:07, or 1:03:07 past an hour. */
  function clock(seconds) {
    var s = isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
    var h = Math.floor(s / 3600);
    return (h ? h + ':' : '') + twoDigits(Math.floor((s % 3600) / 60)) + ':' + twoDigits(s % 60);
  }

  /* Seconds on a clock that only moves forwards: setting the TV's date does not jump it. */
  function monoNow() {
    return (window.performance && performance.now ? performance.now() : Date.now()) / 1000;
  }

  function later(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function remembered(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function remember(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (e) { /* storage refused: kept for this page only */ }
  }

  /* A name for this screen, kept by the browser, so the box's dashboard can list the room's screens. */
  function screenId() {
    var id = remembered('classbox.screen');
    if (!id) {
      id = 'tv-' + Math.random().toString(36).slice(2, 12);
      remember('classbox.screen', id);
    }
    return id;
  }

  function setOverlayState() {
    var name = '';
    if (!message.hidden) name = 'message';
    else if (!$('pause-overlay').hidden) name = 'pause';
    else if (!$('offer-overlay').hidden) name = 'offer';
    else if (!$('end-overlay').hidden) name = 'ended';
    body.setAttribute('data-overlay', name);
  }

  function top() { return stack[stack.length - 1]; }

  // ------------------------------------------------------------------ fetching

  function HttpError(status, data) {
    this.status = status;
    this.code = data && data.code;
  }

  /* Send a request and resolve with its JSON answer; reject with HttpError or a network error. */
  function requestJSON(method, url, payload, timeoutMs) {
    return new Promise(function (resolve, reject) {
      var settled = false;
      var controller = typeof AbortController === 'function' ? new AbortController() : null;
      var timer = setTimeout(function () {
        if (settled) return;
        settled = true;
        if (controller) controller.abort();
        reject(new Error('timeout'));
      }, timeoutMs || FETCH_TIMEOUT_MS);
      function finish(fn, value) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn(value);
      }
      // credentials: Chromium before 72 sent no cookies by default, and commands need the pairing cookie.
      var init = { method: method, headers: { Accept: 'application/json' }, cache: 'no-store',
        credentials: 'same-origin' };
      if (controller) init.signal = controller.signal;
      if (payload !== null && payload !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(payload);
      }
      fetch(url, init).then(function (response) {
        return response.json().then(function (data) {
          return { response: response, data: data };
        }, function () {
          return { response: response, data: null };
        });
      }).then(function (result) {
        if (result.response.ok && result.data) finish(resolve, result.data);
        else finish(reject, new HttpError(result.response.status, result.data));
      }, function (err) {
        finish(reject, err);
      });
    });
  }

  function getJSON(url) { return requestJSON('GET', url, null, FETCH_TIMEOUT_MS); }

  function showLoading() {
    clearTimeout(loadingTimer);
    body.setAttribute('data-loading', 'true');
    // A LAN answer usually comes at once; only say "loading" when it does not, to avoid a flash.
    loadingTimer = setTimeout(function () { loading.hidden = false; }, 250);
  }

  function hideLoading() {
    clearTimeout(loadingTimer);
    loading.hidden = true;
    body.removeAttribute('data-loading');
  }

  function isLoading() { return body.hasAttribute('data-loading'); }

  function cancelLoading() {
    loadToken += 1;
    hideLoading();
  }

  /* Fetch url, then call onData with the answer unless the teacher navigated away meanwhile. */
  function load(url, onData) {
    var token = ++loadToken;
    showLoading();
    getJSON(url).then(function (data) {
      if (token !== loadToken) return;
      hideLoading();
      onData(data);
    }, function (err) {
      if (token !== loadToken) return;
      hideLoading();
      showLoadError(err, function () { load(url, onData); });
    });
  }

  function showLoadError(err, retry) {
    if (err instanceof HttpError && err.status === 404) {
      showMessage('找不到这节课', '它可能已经从教学盒子里删除了。请返回重新选择。',
        [{ label: '返回', action: hideMessage }]);
    } else if (err instanceof HttpError) {
      showMessage('教学盒子出错了', '请稍后再试；如果一直出错，请联系技术员。（错误代码 ' + err.status + '）',
        [{ label: '重试', action: retry }, { label: '返回', action: hideMessage }]);
    } else {
      showMessage('无法连接到教学盒子，请检查网络', '请确认电视和教学盒子连在同一个网络上，然后按 确定 键重试。',
        [{ label: '重试', action: retry }, { label: '返回', action: hideMessage }]);
    }
  }

  // ------------------------------------------------------------------ focus

  /* Return the elements the arrows move between right now, and where the index is kept. */
  function focusGroup() {
    if (messageState) return messageState;
    var entry = top();
    if (!entry) return null;
    if (entry.screen === 'player') {
      if (!$('pause-overlay').hidden) return { items: [$('pause-continue')], index: 0 };
      if (!$('offer-overlay').hidden) return player.offerGroup;
      if (!$('end-overlay').hidden) return player.endGroup;
      return null;
    }
    if (entry.screen === 'document') return null;
    return entry;
  }

  function markFocused(node) {
    var old = document.querySelectorAll('.is-focused');
    for (var i = 0; i < old.length; i++) if (old[i] !== node) old[i].classList.remove('is-focused');
    if (!node) return;
    node.classList.add('is-focused');
    try {
      node.focus({ preventScroll: true });
    } catch (e) {
      node.focus();
    }
    if (node.scrollIntoView) {
      try {
        node.scrollIntoView({ block: 'nearest', inline: 'nearest' });
      } catch (e) {
        node.scrollIntoView(false);
      }
    }
  }

  function focusIndex(group, index) {
    if (!group || !group.items || !group.items.length) return;
    if (index < 0) index = 0;
    if (index >= group.items.length) index = group.items.length - 1;
    group.index = index;
    markFocused(group.items[index]);
  }

  function refocus() {
    var group = focusGroup();
    if (group && group.items && group.items.length) {
      focusIndex(group, group.index || 0);
      return;
    }
    markFocused(null);
    var entry = top();
    if (entry && entry.screen === 'player') playerLayer.focus();
    else if (entry && entry.screen === 'document') docLayer.focus();
  }

  function center(rect) {
    return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
  }

  /* Return the index of the item the arrow leads to from items[index], spatially. */
  function neighbour(items, index, direction) {
    var here = items[index].getBoundingClientRect();
    var c = center(here);
    var best = -1;
    var bestGap = Infinity;
    var bestOffset = Infinity;
    var i;
    if (direction === 'left' || direction === 'right') {
      for (i = 0; i < items.length; i++) {
        if (i === index) continue;
        var r = items[i].getBoundingClientRect();
        var sameRow = r.top < here.bottom - 2 && r.bottom > here.top + 2;
        var dx = center(r).x - c.x;
        if (!sameRow || (direction === 'right' ? dx <= 1 : dx >= -1)) continue;
        if (Math.abs(dx) < bestGap) { bestGap = Math.abs(dx); best = i; }
      }
      if (best >= 0) return best;
      // At a row's end, continue in reading order, as one expects of a list that wraps.
      var next = direction === 'right' ? index + 1 : index - 1;
      return next >= 0 && next < items.length ? next : index;
    }
    for (i = 0; i < items.length; i++) {
      if (i === index) continue;
      var rect = items[i].getBoundingClientRect();
      var gap = direction === 'down' ? rect.top - here.bottom : here.top - rect.bottom;
      if (gap < -2) continue;
      var offset = Math.abs(center(rect).x - c.x);
      // Nearest row first (a few pixels of slack), then the nearest column within it.
      if (gap < bestGap - 4 || (Math.abs(gap - bestGap) <= 4 && offset < bestOffset)) {
        bestGap = gap;
        bestOffset = offset;
        best = i;
      }
    }
    return best >= 0 ? best : index;
  }

  function moveFocus(direction) {
    var group = focusGroup();
    if (!group || !group.items || !group.items.length) return;
    var index = group.index || 0;
    if (index >= group.items.length) index = group.items.length - 1;
    focusIndex(group, neighbour(group.items, index, direction));
  }

  function activateFocused() {
    var group = focusGroup();
    if (!group || !group.items || !group.items.length) return;
    var node = group.items[group.index || 0];
    if (node && node.activate) node.activate();
  }

  /* Make node a focusable item of group that runs action on Enter, click or tap. */
  function item(group, node, action) {
    var index = group.items.length;
    group.items.push(node);
    node.activate = action;
    node.addEventListener('click', function (event) {
      event.preventDefault();
      if (focusGroup() !== group) return;
      focusIndex(group, index);
      action();
    });
    return node;
  }

  // ------------------------------------------------------------------ messages (errors, empty)

  function showMessage(title, text, buttons, onBack) {
    $('message-title').textContent = title;
    $('message-text').textContent = text;
    var actions = $('message-actions');
    clear(actions);
    messageState = { items: [], index: 0, onBack: onBack || hideMessage };
    var state = messageState;
    buttons.forEach(function (b) {
      actions.appendChild(item(state, el('button', 'tile action', b.label), function () {
        if (b.action !== hideMessage) hideMessage();
        b.action();
      }));
    });
    message.hidden = false;
    setOverlayState();
    focusIndex(messageState, 0);
  }

  function hideMessage() {
    message.hidden = true;
    messageState = null;
    setOverlayState();
    refocus();
  }

  // ------------------------------------------------------------------ the stack of screens

  function push(entry) {
    var current = top();
    if (current) leave(current);
    stack.push(entry);
    guardHistory();
    show(entry);
  }

  /* Make entry the only browse screen; a room screen on top stays there unless dropRoom. */
  function replaceAll(entry, dropRoom) {
    var roomEntry = !dropRoom && top() && top().room ? stack.pop() : null;
    while (stack.length) leave(stack.pop());
    stack.push(entry);
    if (roomEntry) {
      stack.push(roomEntry);  // still on screen: the home screen shows when the room's lesson ends
      return;
    }
    show(entry);
  }

  /* Go back one screen; return false at the home screen. */
  function popScreen() {
    if (stack.length <= 1) return false;
    leave(stack.pop());
    show(top());
    return true;
  }

  /* Close what is in front (message, loading) or go back one screen; on a room screen, tell the room. */
  function back() {
    if (messageState) {
      messageState.onBack();
      return;
    }
    if (isLoading()) {
      cancelLoading();
      return;
    }
    var entry = top();
    if (entry && entry.room) {
      roomBack(entry);
      return;
    }
    popScreen();
  }

  // A phone's or TV browser's own Back button walks the history, not our keys. While away from the
  // home screen one extra "guard" entry sits on top of the page's; going back from it is taken as
  // our back(), and the guard is put back until home is reached, so the next Back leaves the page.
  // Our own keys never touch the history, so a quick series of keys cannot race a history step.
  var guarded = !!(history.state && history.state.classbox === 'guard');

  function guardHistory() {
    if (guarded) return;
    try {
      history.pushState({ classbox: 'guard' }, '');
      guarded = true;
    } catch (e) { /* the history is a convenience; the keys work without it */ }
  }

  window.addEventListener('popstate', function (event) {
    if (event.state && event.state.classbox === 'guard') {
      guarded = true;  // the browser's Forward: nothing to redo
      return;
    }
    guarded = false;
    back();
    if (stack.length > 1 || messageState) guardHistory();
  });

  function leave(entry) {
    if (entry.screen === 'player') player.close();
    if (entry.screen === 'document') docViewer.close();
  }

  function show(entry) {
    body.setAttribute('data-screen', entry.screen);
    playerLayer.hidden = entry.screen !== 'player';
    docLayer.hidden = entry.screen !== 'document';
    backButton.hidden = stack.length <= 1;
    roomPanel.hidden = entry.screen !== 'home' || !room.name;
    renderCrumbs(entry.crumbs || []);
    if (entry.screen === 'player') {
      player.open(entry);
    } else if (entry.screen === 'document') {
      docViewer.open(entry);
    } else {
      entry.items = [];
      clear(main);
      main.scrollTop = 0;
      RENDER[entry.screen](entry);
    }
    setOverlayState();
    refocus();
  }

  function renderCrumbs(parts) {
    clear(crumbs);
    var all = ['首页'].concat(parts);
    all.forEach(function (part, i) {
      if (i) crumbs.appendChild(el('span', 'sep', '›'));
      crumbs.appendChild(el('span', i === all.length - 1 ? 'crumb current' : 'crumb', part));
    });
  }

  // ------------------------------------------------------------------ browsing the catalogue

  /* Open the first level from levelIndex that has values for these filters, or the lesson list. */
  function openLevel(levelIndex, filters, crumbParts, replace) {
    load('/api/v1/catalog' + query(filters), function (data) {
      var entry = null;
      for (var i = levelIndex; i < LEVELS.length; i++) {
        var values = (data.facets && data.facets[LEVELS[i].facet]) || [];
        if (values.length || i === 0) {
          entry = { screen: LEVELS[i].screen, level: i, filters: filters, crumbs: crumbParts, data: data, index: 0 };
          break;
        }
      }
      if (!entry) entry = { screen: 'lessons', filters: filters, crumbs: crumbParts, data: data, index: 0 };
      if (replace) replaceAll(entry);
      else push(entry);
    });
  }

  function heading(text, note) {
    var h = el('div', 'heading');
    h.appendChild(el('h1', null, text));
    if (note) h.appendChild(el('p', 'note', note));
    main.appendChild(h);
  }

  function renderLevel(entry) {
    var level = LEVELS[entry.level];
    var data = entry.data;
    var values = (data.facets && data.facets[level.facet]) || [];
    if (entry.level === 0 && !data.total) {
      var empty = el('div', 'empty');
      empty.appendChild(el('h1', null, '还没有课程'));
      empty.appendChild(el('p', null, '这台教学盒子里还没有导入课程。'));
      empty.appendChild(el('p', null, '请联系技术员导入课程（用 U 盘导入，或连上网络后同步）。'));
      main.appendChild(empty);
      empty.appendChild(item(entry, el('button', 'tile action', '刷新'), start));
      return;
    }
    heading(level.heading, '共 ' + data.total + ' 节课');
    var grid = el('div', 'grid grid-choices');
    var listed = 0;
    values.forEach(function (v) {
      listed += v.count;
      var tile = el('button', 'tile choice');
      tile.type = 'button';
      tile.setAttribute('data-value', v.value);
      tile.appendChild(el('span', 'label', v.value));
      tile.appendChild(el('span', 'count', v.count + ' 节课'));
      grid.appendChild(item(entry, tile, function () { choose(entry, v.value); }));
    });
    if (listed < data.total) {
      // Some lessons have no value at this level (e.g. 专题教育 without a grade): list them all too.
      var all = el('button', 'tile choice all');
      all.type = 'button';
      all.setAttribute('data-value', '');
      all.appendChild(el('span', 'label', '全部课程'));
      all.appendChild(el('span', 'count', data.total + ' 节课'));
      grid.appendChild(item(entry, all, function () {
        push({ screen: 'lessons', filters: entry.filters, crumbs: entry.crumbs.concat(['全部课程']), data: data,
          index: 0 });
      }));
    }
    main.appendChild(grid);
  }

  function choose(entry, value) {
    var filters = copy(entry.filters);
    filters[LEVELS[entry.level].facet] = value;
    openLevel(entry.level + 1, filters, entry.crumbs.concat([value]));
  }

  function pathText(path) {
    var parts = [];
    PATH_LEVELS.forEach(function (k) {
      if (path && path[k]) parts.push(path[k]);
    });
    return parts.join(' · ');
  }

  /* Return what tells lessons of one list apart: unit, lesson and period, less what the title says. */
  function lessonMeta(lesson) {
    var path = lesson.path || {};
    var parts = [];
    ['unit', 'lesson', 'period'].forEach(function (k) {
      var v = path[k];
      if (v && lesson.title.indexOf(v) < 0 && parts.indexOf(v) < 0) parts.push(v);
    });
    return parts.join(' · ');
  }

  function roleOrder(role) {
    var i = DOCUMENT_ROLES.indexOf(role);
    return role === 'video' ? -1 : i < 0 ? DOCUMENT_ROLES.length : i;
  }

  function renderLessons(entry) {
    var lessons = entry.data.lessons || [];
    heading('请选择课程', '共 ' + lessons.length + ' 节课');
    if (!lessons.length) {
      main.appendChild(el('p', 'empty-note', '这里还没有课程。'));
      return;
    }
    var grid = el('div', 'grid grid-lessons');
    lessons.forEach(function (lesson) {
      var tile = el('button', 'tile lesson-tile');
      tile.type = 'button';
      tile.setAttribute('data-lesson-id', lesson.id);
      if (lesson.cover) {
        var img = el('img', 'cover');
        img.alt = '';
        img.src = lesson.cover;
        tile.appendChild(img);
      }
      tile.appendChild(el('span', 'title', lesson.title));
      tile.appendChild(el('span', 'meta', lessonMeta(lesson)));
      var roles = el('span', 'roles');
      var shown = (lesson.roles || []).filter(function (role) { return role !== 'cover'; });
      shown.sort(function (a, b) { return roleOrder(a) - roleOrder(b); });
      shown.forEach(function (role) {
        roles.appendChild(el('span', 'role', role === 'video' ? '▶ 视频' : ROLE_NAMES[role] || role));
      });
      tile.appendChild(roles);
      grid.appendChild(item(entry, tile, function () { openLesson(entry, lesson); }));
    });
    main.appendChild(grid);
  }

  function openLesson(from, lesson) {
    load('/api/v1/lessons/' + encodeURIComponent(lesson.id), function (data) {
      room.lessons[data.id] = data;
      push({ screen: 'lesson', lesson: data, crumbs: from.crumbs.concat([data.title]), index: 0 });
    });
  }

  function documentTitle(asset, assets) {
    var name = ROLE_NAMES[asset.role] || asset.role;
    var same = assets.filter(function (a) { return a.role === asset.role; });
    return same.length > 1 ? name + '（' + asset.name + '）' : name;
  }

  function lessonVideos(lesson) {
    return (lesson.assets || []).filter(function (a) { return a.role === 'video'; });
  }

  function lessonDocuments(lesson) {
    var docs = (lesson.assets || []).filter(function (a) {
      return DOCUMENT_ROLES.indexOf(a.role) >= 0 && a.pages && a.pages.length;
    });
    docs.sort(function (a, b) { return roleOrder(a.role) - roleOrder(b.role); });
    return docs;
  }

  function renderLesson(entry) {
    var lesson = entry.lesson;
    var head = el('div', 'lesson-head');
    head.appendChild(el('h1', 'lesson-title', lesson.title));
    head.appendChild(el('p', 'lesson-path', [lesson.section, pathText(lesson.path)].filter(Boolean).join(' · ')));
    main.appendChild(head);
    var actions = el('div', 'grid grid-actions');
    var videos = lessonVideos(lesson);
    // The room plays the lesson's first video (and stops at the pause points of all of them).
    videos.slice(0, 1).forEach(function (asset) {
      var n = (asset.pause_points || []).length;
      var tile = el('button', 'tile action-tile play');
      tile.type = 'button';
      tile.setAttribute('data-role', 'video');
      tile.appendChild(el('span', 'label', '▶ 播放视频'));
      tile.appendChild(el('span', 'meta', n ? '有 ' + n + ' 个暂停点，到点自动暂停' : '没有暂停点'));
      actions.appendChild(item(entry, tile, function () { playInRoom(lesson); }));
    });
    var docs = lessonDocuments(lesson);
    docs.forEach(function (asset) {
      var tile = el('button', 'tile action-tile');
      tile.type = 'button';
      tile.setAttribute('data-role', asset.role);
      tile.appendChild(el('span', 'label', documentTitle(asset, docs)));
      tile.appendChild(el('span', 'meta', '共 ' + asset.pages.length + ' 页'));
      actions.appendChild(item(entry, tile, function () { showInRoom(lesson, asset); }));
    });
    main.appendChild(actions);
    var hidden = (lesson.assets || []).filter(function (a) {
      return DOCUMENT_ROLES.indexOf(a.role) >= 0 && !(a.pages && a.pages.length);
    });
    if (hidden.length) {
      main.appendChild(el('p', 'lesson-note', hidden.map(function (a) {
        return (ROLE_NAMES[a.role] || a.role) + '（' + a.name + '）';
      }).join('、') + ' 没有可在电视上显示的页面，请在电脑上打开。'));
    }
    if (!videos.length && !docs.length) {
      main.appendChild(el('p', 'lesson-note', '这节课没有可以在电视上播放或显示的内容。'));
    }
  }

  /* List the box's rooms, to choose which one this TV is in (once: it is remembered). */
  function renderRooms(entry) {
    heading('这台电视在哪个教室？', entry.note || '选择一次即可，以后打开就是这个教室');
    var grid = el('div', 'grid grid-choices');
    entry.rooms.forEach(function (r) {
      var tile = el('button', 'tile choice');
      tile.type = 'button';
      tile.setAttribute('data-room', r.name);
      tile.appendChild(el('span', 'label', r.name));
      tile.appendChild(el('span', 'count', r['class'] || '\u00a0'));
      grid.appendChild(item(entry, tile, function () { follow(r.name); }));
    });
    main.appendChild(grid);
  }

  var RENDER = { home: renderLevel, grades: renderLevel, subjects: renderLevel, lessons: renderLessons,
    lesson: renderLesson, rooms: renderRooms };

  /* Open the lesson in the room and play it, unless the box offers to continue where it was left. */
  function playInRoom(lesson) {
    requestFullscreen();
    room.lessons[lesson.id] = lesson;
    var steps = [];
    if (!room.state || room.state.lesson !== lesson.id) steps.push(['open', { lesson: lesson.id }]);
    steps.push(function (s) {
      s = s || room.state;
      return s && s.offer === null && !s.playing ? ['play'] : null;
    });
    roomCommands(steps);
  }

  /* Show a page of one of the lesson's documents in the room. */
  function showInRoom(lesson, asset) {
    room.lessons[lesson.id] = lesson;
    var steps = [];
    if (!room.state || room.state.lesson !== lesson.id) {
      steps.push(['open', { lesson: lesson.id }]);
      room.openedForDocument = lesson.id;  // so Back puts the room back as it was: nothing open
    }
    var page = Math.min(docPages[asset.url] || 0, asset.pages.length - 1);
    steps.push(['document', { asset: lesson.assets.indexOf(asset), page: page }]);
    roomCommands(steps);
  }

  function requestFullscreen() {
    var root = document.documentElement;
    var fn = root.requestFullscreen || root.webkitRequestFullscreen;
    if (!fn || document.fullscreenElement || document.webkitFullscreenElement) return;
    try {
      var p = fn.call(root);
      if (p && p.catch) p.catch(function () { /* not allowed here: the page already fills the screen */ });
    } catch (e) { /* as above */ }
  }

  function exitFullscreen() {
    var fn = document.exitFullscreen || document.webkitExitFullscreen;
    if (!fn || !(document.fullscreenElement || document.webkitFullscreenElement)) return;
    try {
      var p = fn.call(document);
      if (p && p.catch) p.catch(function () { /* ignore */ });
    } catch (e) { /* ignore */ }
  }

  // ------------------------------------------------------------------ the room: following its state

  var room = {
    name: null,
    generation: 0,        // bumps when the TV changes rooms so late answers for the old one are dropped
    state: null,          // the room's state last applied
    seen: null,           // the newest version heard of, asked "after" in the next poll
    stash: null,          // a polled state held back while this TV's own commands are on the way
    stashRestart: false,
    inFlight: 0,
    failures: 0,
    pollTimer: null,
    codeTimer: null,
    code: null,
    paired: null,         // a promise while pairing, then resolved; null to pair again
    lessons: {},          // lesson id → /api/v1/lessons answer
    fetching: {},
    landBelow: false,     // this TV's Back stopped the lesson: show the screen below, not home
    openedForDocument: null,
    number: 0
  };
  var offsets = [];       // recent (box time − this TV's time) samples, in seconds

  function roomUrl(path) {
    return '/api/v1/rooms/' + encodeURIComponent(room.name) + path;
  }

  /* Take a sample of the box's clock. The answer left the box before it arrived: the largest
     sample is the one least delayed, so the best of the recent ones is kept. */
  function sampleClock(serverTime, arrival) {
    if (typeof serverTime !== 'number') return;
    var sample = serverTime - arrival;
    if (offsets.length && Math.abs(sample - clockOffset()) > 5) offsets = [];  // the box's clock was set
    offsets.push(sample);
    if (offsets.length > 8) offsets.shift();
  }

  function clockOffset() {
    return offsets.length ? Math.max.apply(null, offsets) : 0;
  }

  /* Return where the room's video is now, by the box's clock. */
  function expectedPosition(s) {
    if (!s.playing) return s.position;
    return s.position + Math.max(0, monoNow() + clockOffset() - s.server_time);
  }

  function clientId() {
    var id = remembered(STORE_CLIENT);
    if (!id) {
      id = 'tv-' + Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
      remember(STORE_CLIENT, id);
    }
    return id;
  }

  /* Number the next command; the box applies each number once, so a number is never used twice. */
  function nextNumber() {
    var n = Math.max(parseInt(remembered(STORE_N), 10) || 0, room.number) + 1;
    room.number = n;
    remember(STORE_N, String(n));
    return n;
  }

  /* Show the room's name and code on the home screen; after the first, a new code also reloads the QR. */
  function showRoomInfo() {
    $('room-name').textContent = room.name;
    $('room-code').textContent = room.code || '';
    var line = '教室：' + room.name + (room.code ? '　房间码 ' + room.code : '');
    $('foot-room').textContent = line;
    $('foot-room').hidden = false;
    $('player-address').textContent = '本机地址：' + BOX_URL + '　' + line;
  }

  function showCode(code) {
    var qr = $('room-qr');
    // The QR code is asked for only once the code is known: on a new box the first request makes the
    // room's secret, and two at once could each make a different one.
    if (!qr.getAttribute('src')) qr.src = roomUrl('/qr.svg');
    else if (room.code !== null && room.code !== code) qr.src = roomUrl('/qr.svg') + '?day=' + encodeURIComponent(code);
    room.code = code;
    showRoomInfo();
  }

  function pairWith(code, again) {
    var gen = room.generation;
    room.paired = requestJSON('POST', roomUrl('/pair'), { code: code }, COMMAND_TIMEOUT_MS).then(function () {
      return true;
    }, function (err) {
      if (gen === room.generation) room.paired = null;
      if (again || gen !== room.generation || !(err instanceof HttpError && err.status === 400)) throw err;
      // The code changed since it was read (midnight): pair once more with today's.
      return getJSON(roomUrl('/pairing')).then(function (data) {
        showCode(data.code);
        return pairWith(data.code, true);
      });
    });
    return room.paired;
  }

  /* Pair this TV with the room (a cookie) so that its keys can send commands. */
  function ensurePaired() {
    if (room.paired) return room.paired;
    var gen = room.generation;
    room.paired = getJSON(roomUrl('/pairing')).then(function (data) {
      if (gen !== room.generation) throw new Error('room changed');
      showCode(data.code);
      room.paired = null;
      return pairWith(data.code);
    }, function (err) {
      if (gen === room.generation) room.paired = null;
      throw err;
    });
    return room.paired;
  }

  /* Ask for today's code; when it changed (midnight), show it and pair again. */
  function refreshPairing() {
    var gen = room.generation;
    getJSON(roomUrl('/pairing')).then(function (data) {
      if (gen !== room.generation) return;
      var changed = data.code !== room.code;
      showCode(data.code);
      if (changed || !room.paired) {
        pairWith(data.code).catch(function () { /* the next command pairs again */ });
      }
    }, function () {
      // The box is away: the code on screen stays; without one yet, ask again soon.
      if (gen === room.generation && room.code === null) setTimeout(refreshPairing, 5000);
    });
  }

  /* Show a room: remember it, follow its state, pair, and open the home screen under it. */
  function follow(name) {
    if (room.name !== name) {
      room.generation += 1;
      room.state = null;
      room.seen = null;
      room.stash = null;
      room.paired = null;
      room.code = null;
      room.failures = 0;
      room.inFlight = 0;
      room.landBelow = false;
      room.openedForDocument = null;
    }
    if (room.code === null) $('room-qr').removeAttribute('src');
    room.name = name;
    remember(STORE_ROOM, name);
    showRoomInfo();
    clearTimeout(room.pollTimer);
    poll(room.generation);
    refreshPairing();
    clearInterval(room.codeTimer);
    room.codeTimer = setInterval(refreshPairing, CODE_REFRESH_MS);
    openLevel(0, {}, [], true);
  }

  /* Ask the box for the room's state, waiting for a change; forever, backing off while it is away. */
  function poll(gen) {
    if (gen !== room.generation) return;
    var after = room.seen === null ? -1 : room.seen;
    var asked = monoNow();
    var url = roomUrl('/state') + '?after=' + after + '&wait=' + POLL_WAIT_S + '&kind=tv&screen=' + screenId();
    requestJSON('GET', url, null, POLL_TIMEOUT_MS).then(function (data) {
      if (gen !== room.generation) return;
      room.failures = 0;
      setConnected(true);
      takeState(data, 'poll', after);
      var wait = data.retry_after > 0 ? data.retry_after * 1000 : 0;
      // Never spin: an unchanged state answered at once (it should not happen) waits a second.
      if (!wait && data.version === after && monoNow() - asked < 0.1) wait = 1000;
      room.pollTimer = setTimeout(function () { poll(gen); }, wait);
    }, function (err) {
      if (gen !== room.generation) return;
      if (err instanceof HttpError && err.status === 404) {
        roomGone();
        return;
      }
      room.failures += 1;
      if (room.failures >= 2) setConnected(false);
      var wait = Math.min(BACKOFF_MAX_MS, 500 * Math.pow(2, room.failures - 1)) * (0.75 + Math.random() * 0.5);
      room.pollTimer = setTimeout(function () { poll(gen); }, wait);
    });
  }

  function setConnected(ok) {
    $('connection').hidden = ok;
  }

  /* Take a state from the box: from the poll (source 'poll', asked after a version) or a reply. */
  function takeState(data, source, after) {
    if (!data || typeof data.version !== 'number') return;
    sampleClock(data.server_time, monoNow());
    // Versions only grow; one below what was asked for means the box started again.
    var restart = source === 'poll' && typeof after === 'number' && data.version < after;
    if (restart || room.seen === null || data.version > room.seen) room.seen = data.version;
    if (source === 'poll' && room.inFlight > 0) {
      // This TV's own command is on the way: show its outcome first, not a state from before it.
      if (restart || !room.stash || data.version > room.stash.version) {
        room.stash = data;
        room.stashRestart = restart;
      }
      return;
    }
    if (restart || !room.state || data.version > room.state.version) applyState(data);
  }

  function flushStash() {
    if (room.inFlight > 0 || !room.stash) return;
    var s = room.stash;
    room.stash = null;
    if (room.stashRestart || !room.state || s.version > room.state.version) applyState(s);
  }

  function applyState(s) {
    room.state = s;
    if (room.openedForDocument && (s.lesson !== room.openedForDocument || s.playing)) room.openedForDocument = null;
    renderRoom();
  }

  /* Make the top of the stack show what the room shows: nothing, the video, or a document page. */
  function renderRoom() {
    var s = room.state;
    if (!s) return;
    var current = top();
    var onRoom = !!(current && current.room);
    if (!s.lesson) {
      if (onRoom) leaveRoomScreen();
      room.landBelow = false;
      return;
    }
    var lesson = room.lessons[s.lesson];
    if (!lesson) {
      fetchLesson(s.lesson);  // renders again when it arrives
      return;
    }
    var asset = typeof s.document === 'number' ? (lesson.assets || [])[s.document] : null;
    var want = asset && asset.pages && asset.pages.length ? 'document' : 'player';
    if (onRoom && current.lesson.id === s.lesson && current.screen === want &&
        (want === 'player' || current.assetIndex === s.document)) {
      if (want === 'player') player.update();
      else docViewer.update(s.page);
      setOverlayState();
      refocus();
      return;
    }
    var entry;
    if (want === 'player') {
      entry = { screen: 'player', room: true, lesson: lesson, asset: lessonVideos(lesson)[0] || null,
        crumbs: [lesson.title, '视频'] };
    } else {
      var title = documentTitle(asset, lessonDocuments(lesson));
      entry = { screen: 'document', room: true, lesson: lesson, asset: asset, assetIndex: s.document,
        page: Math.min(s.page, asset.pages.length - 1), title: title, crumbs: [lesson.title, title] };
    }
    cancelLoading();  // a browse answer still on its way must not land on top of the room's screen
    if (onRoom) {
      leave(stack.pop());
      stack.push(entry);
      show(entry);
    } else {
      push(entry);
    }
  }

  /* The room shows nothing: back to where this TV's Back key was pressed, or else to the home screen. */
  function leaveRoomScreen() {
    leave(stack.pop());
    if (!room.landBelow) while (stack.length > 1) leave(stack.pop());
    room.landBelow = false;
    if (!stack.length) {
      playerLayer.hidden = true;
      docLayer.hidden = true;
      openLevel(0, {}, [], true);  // the room's screen came before the home screen had loaded
      return;
    }
    show(top());
  }

  function fetchLesson(id) {
    if (room.fetching[id]) return;
    room.fetching[id] = true;
    getJSON('/api/v1/lessons/' + encodeURIComponent(id)).then(function (data) {
      delete room.fetching[id];
      room.lessons[id] = data;
      if (room.state && room.state.lesson === id) renderRoom();
    }, function (err) {
      delete room.fetching[id];
      if (!room.state || room.state.lesson !== id) return;
      if (err instanceof HttpError && err.status === 404) {
        showMessage('找不到这节课', '教室里打开的这节课不在这台教学盒子上（或还没有下载完）。',
          [{ label: '返回', action: hideMessage }]);
        return;
      }
      setTimeout(function () { if (room.state && room.state.lesson === id) renderRoom(); }, 2000);
    });
  }

  /* Back on a room screen: hide the prompt, close the document, or stop the lesson for the room. */
  function roomBack(entry) {
    var s = room.state;
    if (!s || !s.lesson || room.landBelow) return;  // no lesson, or a stop already on its way
    if (entry.screen === 'player' && s.prompt) {
      roomCommands([['prompt', { show: false }]]);
    } else if (entry.screen === 'document' && room.openedForDocument !== s.lesson) {
      roomCommands([['close_document']]);
    } else {
      room.landBelow = true;
      roomCommands([['stop']]);
    }
  }

  function roomGone() {
    room.generation += 1;
    clearInterval(room.codeTimer);
    var name = room.name;
    room.name = null;
    room.state = null;
    remember(STORE_ROOM, '');
    showMessage('找不到教室“' + name + '”', '它可能已经从教学盒子里删除了。请重新选择这台电视所在的教室。',
      [{ label: '选择教室', action: function () { chooseRoom(null); } }], function () { chooseRoom(null); });
  }

  // ------------------------------------------------------------------ the room: commands and reports

  function sendCommand(cmd, args) {
    var payload = { client: clientId(), n: nextNumber(), cmd: cmd, args: args || {} };
    var url = roomUrl('/commands');
    function attempt(retries) {
      return ensurePaired().then(function () {
        return requestJSON('POST', url, payload, COMMAND_TIMEOUT_MS);
      }).catch(function (err) {
        if (retries <= 0) throw err;
        if (err instanceof HttpError && err.status === 403) {
          room.paired = null;  // the pairing ended with the day: pair again with today's code
          return attempt(retries - 1);
        }
        if (err instanceof HttpError) throw err;
        // The same number again: had the first one landed, the box would not apply it twice.
        return later(500).then(function () { return attempt(retries - 1); });
      });
    }
    return attempt(1);
  }

  /* Send commands one after the other (a step may be a function of the last answer that returns the
     next command or null), then show the room as the last answer says. */
  function roomCommands(steps) {
    var gen = room.generation;
    room.inFlight += 1;
    var chain = Promise.resolve(null);
    steps.forEach(function (step) {
      chain = chain.then(function (state) {
        var c = typeof step === 'function' ? step(state) : step;
        return c ? sendCommand(c[0], c[1]) : state;
      });
    });
    chain.then(function (state) {
      if (gen !== room.generation) return;
      room.inFlight -= 1;
      if (state) takeState(state, 'reply');
      flushStash();
    }, function (err) {
      if (gen !== room.generation) return;
      room.inFlight -= 1;
      room.landBelow = false;
      flushStash();
      commandFailed(err, steps);
    });
  }

  function commandFailed(err, steps) {
    if (err instanceof HttpError && err.status === 409) return;  // overtaken by another screen: the poll shows it
    if (err instanceof HttpError && err.status === 404) {
      showMessage('找不到这节课', '它可能已经从教学盒子里删除了。请返回重新选择。', [{ label: '返回', action: hideMessage }]);
    } else if (err instanceof HttpError) {
      showMessage('教学盒子出错了', '请稍后再试；如果一直出错，请联系技术员。（错误代码 ' + err.status + '）',
        [{ label: '返回', action: hideMessage }]);
    } else {
      showMessage('无法连接到教学盒子，请检查网络', '请确认电视和教学盒子连在同一个网络上，然后按 确定 键重试。',
        [{ label: '重试', action: function () { roomCommands(steps); } }, { label: '返回', action: hideMessage }]);
    }
  }

  function sendReport(payload) {
    var gen = room.generation;
    requestJSON('POST', roomUrl('/report'), payload, COMMAND_TIMEOUT_MS).then(function (data) {
      if (gen === room.generation) takeState(data, 'reply');
    }, function () { /* the next report or the poll catches up */ });
  }

  // ------------------------------------------------------------------ the player

  var player = (function () {
    var entry = null;
    var ticker = null;
    var hideTimer = null;
    var lastTime = 0;        // where playback was before an error, which may reset currentTime
    var lastReport = 0;
    var stalled = false;     // 'waiting' came: report when it plays again
    var endReported = false;
    var mutedByPolicy = false;
    var points = [];
    var pauseOverlay = $('pause-overlay');
    var offerOverlay = $('offer-overlay');
    var endOverlay = $('end-overlay');
    var status = $('player-status');
    var badge = $('player-badge');
    var sound = $('player-sound');
    var fill = $('player-fill');
    var progress = $('player-progress');
    var api = { endGroup: { items: [], index: 0 }, offerGroup: { items: [], index: 0 } };

    function active() { return entry !== null; }

    /* Return the room's state if it is about the lesson shown, else null. */
    function roomState() {
      var s = room.state;
      return entry && s && s.lesson === entry.lesson.id ? s : null;
    }

    api.open = function (e) {
      if (entry === e) return;
      entry = e;
      lastTime = 0;
      lastReport = monoNow();
      stalled = false;
      endReported = false;
      pauseOverlay.hidden = true;
      offerOverlay.hidden = true;
      endOverlay.hidden = true;
      badge.hidden = true;
      if (e.asset) video.src = e.asset.url;
      else video.removeAttribute('src');
      startTicking();
      api.update();
    };

    api.close = function () {
      if (!entry) return;
      entry = null;
      stopTicking();
      video.pause();
      video.removeAttribute('src');
      video.load();  // let go of the connection and the decoder: cheap boxes have little memory
      pauseOverlay.hidden = true;
      offerOverlay.hidden = true;
      endOverlay.hidden = true;
      sound.hidden = true;
      exitFullscreen();
    };

    /* Show the room's state: its overlays, its pause points, and the video where the room is. */
    api.update = function () {
      var s = roomState();
      if (!s) return;
      points = (s.points || []).slice().sort(function (a, b) { return a.at - b.at; });
      pauseOverlay.hidden = !s.prompt;
      if (s.prompt) $('pause-prompt').textContent = s.prompt;
      var offering = !s.prompt && typeof s.offer === 'number';
      if (offering) {
        $('offer-at').textContent = clock(s.offer);
        if (offerOverlay.hidden) api.offerGroup.index = 0;
      }
      offerOverlay.hidden = !offering;
      var ending = !s.prompt && !offering && !!s.finished;
      if (ending && endOverlay.hidden) buildEnd();
      endOverlay.hidden = !ending;
      if (!s.playing) endReported = false;
      if (!entry.asset) {
        badge.textContent = '这节课没有视频';
        badge.hidden = false;
      } else {
        badge.textContent = '❚❚ 已暂停　按 确定 键继续';
        badge.hidden = s.playing || !pauseOverlay.hidden || !offerOverlay.hidden || !endOverlay.hidden;
      }
      align();
      drawMarkers();
      showUi();
    };

    /* Bring the video to where the room is: the box decides, the TV follows. */
    function align() {
      var s = roomState();
      if (!s || !entry.asset || video.error) return;
      var d = video.duration;
      var known = video.readyState >= 1 && isFinite(d);
      if (s.playing) {
        var target = expectedPosition(s);
        if (known && target >= d - 0.05) {  // the room is past the end of this video
          if (!video.ended && !video.paused) return;  // it is about to end by itself
          if (Math.abs(video.currentTime - d) > STILL_S) video.currentTime = d;
          reportEnd();
          return;
        }
        if (Math.abs(video.currentTime - target) > DRIFT_S || video.ended) seekTo(target);
        if (video.paused) play();
      } else {
        if (!video.paused) video.pause();
        var at = known ? Math.min(s.position, d) : s.position;
        if (Math.abs(video.currentTime - at) > STILL_S) seekTo(at);
      }
    }

    function seekTo(t) {
      video.currentTime = Math.max(0, t);
      lastReport = monoNow();  // report from where it plays, not from the seek
    }

    function play() {
      var p = video.play();
      if (p && p.catch) {
        p.catch(function (err) {
          if (err && err.name === 'NotAllowedError' && !video.muted) {
            // The browser allows sound only after a key press on this page; play in step without it.
            mutedByPolicy = true;
            video.muted = true;
            sound.hidden = false;
            align();
          }
          // An AbortError means a pause or a new video came first: nothing to do.
        });
      }
    }

    /* A key was pressed: the browser now allows sound. Return whether the video was muted for want of it. */
    api.unmute = function () {
      if (!mutedByPolicy) return false;
      mutedByPolicy = false;
      video.muted = false;
      sound.hidden = true;
      return active();
    };

    function reportEnd() {
      var s = roomState();
      if (!s || !s.playing || endReported) return;
      endReported = true;
      sendReport({ lesson: s.lesson, position: Math.round(video.currentTime * 1000) / 1000, ended: true });
    }

    function reportPosition() {
      var s = roomState();
      if (!s || !s.playing || video.paused || video.seeking || video.ended) return;
      lastReport = monoNow();
      sendReport({ lesson: s.lesson, position: Math.round(video.currentTime * 1000) / 1000 });
    }

    function tick() {
      updateStatus();
      var s = roomState();
      if (!s || !s.playing || video.paused || video.seeking || video.readyState < 3) return;
      var target = expectedPosition(s);
      // A screen ahead of the room comes back; one behind says so instead, and the box waits for it.
      if (video.currentTime - target > DRIFT_S && !(isFinite(video.duration) && target >= video.duration)) {
        seekTo(target);
        return;
      }
      if (monoNow() - lastReport >= REPORT_EVERY_S) reportPosition();
    }

    function drawMarkers() {
      var old = progress.querySelectorAll('.marker');
      for (var i = 0; i < old.length; i++) progress.removeChild(old[i]);
      var duration = video.duration;
      if (!isFinite(duration) || duration <= 0) return;
      points.forEach(function (p) {
        var m = el('span', 'marker');
        m.style.left = Math.min(100, (p.at / duration) * 100) + '%';
        progress.appendChild(m);
      });
    }

    function nextPoint(t) {
      for (var i = 0; i < points.length; i++) if (points[i].at > t + 0.05) return points[i];
      return null;
    }

    function updateStatus() {
      if (!entry) return;
      var t = video.currentTime;
      var d = video.duration;
      var text = (video.paused ? '❚❚ ' : '▶ ') + clock(t) + ' / ' + (isFinite(d) ? clock(d) : '--:--');
      var next = nextPoint(t);
      text += next ? '　下一个暂停点 ' + clock(next.at) : (points.length ? '　后面没有暂停点了' : '');
      status.textContent = text;
      var s = roomState();
      $('player-toggle').textContent = s && s.playing ? '暂停' : '播放';
      fill.style.width = (isFinite(d) && d > 0 ? Math.min(100, (t / d) * 100) : 0) + '%';
    }

    function showUi() {
      playerLayer.classList.add('show-ui');
      clearTimeout(hideTimer);
      if (!video.paused) {
        hideTimer = setTimeout(function () {
          if (!video.paused) playerLayer.classList.remove('show-ui');
        }, UI_HIDE_MS);
      }
      updateStatus();
    }

    function startTicking() {
      if (!ticker) ticker = setInterval(tick, TICK_MS);
    }

    function stopTicking() {
      clearInterval(ticker);
      ticker = null;
    }

    function seekBy(delta) {
      if (!roomState()) return;
      roomCommands([['seek', { by: delta }]]);
      showUi();
    }

    /* Play or pause the room; on the prompt, play resumes the lesson. */
    function toggle() {
      var s = roomState();
      if (!s) return;
      roomCommands([[s.playing ? 'pause' : 'play']]);
      showUi();
    }

    function buildEnd() {
      var group = api.endGroup;
      group.items = [];
      group.index = 0;
      var box = $('end-actions');
      clear(box);
      var lesson = entry.lesson;
      box.appendChild(item(group, el('button', 'tile action', '重新播放'), function () { roomCommands([['play']]); }));
      lessonDocuments(lesson).slice(0, 3).forEach(function (asset) {
        var index = lesson.assets.indexOf(asset);
        box.appendChild(item(group, el('button', 'tile action', '打开' + ROLE_NAMES[asset.role]), function () {
          roomCommands([['document', { asset: index, page: 0 }]]);
        }));
      });
      box.appendChild(item(group, el('button', 'tile action', '返回课程'), back));
    }

    function chooseStart(start) {
      var s = roomState();
      if (s) roomCommands([['open', { lesson: s.lesson, start: start }], ['play']]);
    }

    item(api.offerGroup, $('offer-resume'), function () { chooseStart('resume'); });
    item(api.offerGroup, $('offer-beginning'), function () { chooseStart('beginning'); });

    video.addEventListener('play', showUi);
    video.addEventListener('pause', showUi);
    video.addEventListener('playing', function () {
      if (!active()) return;
      updateStatus();
      if (stalled) {  // it caught up after a stall: tell the box where it really is
        stalled = false;
        reportPosition();
      }
    });
    video.addEventListener('timeupdate', function () {
      if (active()) lastTime = video.currentTime;
      updateStatus();
    });
    video.addEventListener('loadedmetadata', function () {
      if (!active()) return;
      align();  // time went by while it loaded
      drawMarkers();
      updateStatus();
    });
    video.addEventListener('waiting', function () {
      if (!active()) return;
      stalled = true;
      status.textContent = '正在缓冲…';
    });
    video.addEventListener('ended', function () { if (active()) reportEnd(); });
    video.addEventListener('error', function () {
      if (!active() || !video.getAttribute('src')) return;
      if (video.error && video.error.code === 2) {  // MEDIA_ERR_NETWORK: the box or the Wi-Fi went away
        var at = lastTime;
        showMessage('无法连接到教学盒子，请检查网络', '视频停在 ' + clock(at) + '。网络恢复后按 确定 键继续。',
          [{ label: '重试', action: reload }, { label: '返回课程', action: back }]);
        return;
      }
      showMessage('这个视频无法播放', '文件可能已损坏，或者这台电视不支持它的格式。请联系技术员。',
        [{ label: '返回课程', action: back }]);
    });

    function reload() {
      if (!entry || !entry.asset) return;
      video.src = entry.asset.url;
      align();
    }

    video.addEventListener('click', function () { if (active() && !api.unmute()) toggle(); });
    badge.addEventListener('click', function () { if (active()) toggle(); });
    $('pause-continue').activate = toggle;
    $('pause-continue').addEventListener('click', function (event) { event.preventDefault(); toggle(); });
    $('player-toggle').addEventListener('click', toggle);
    $('player-back10').addEventListener('click', function () { seekBy(-SEEK_STEP_S); });
    $('player-fwd10').addEventListener('click', function () { seekBy(SEEK_STEP_S); });
    $('player-exit').addEventListener('click', back);
    playerLayer.addEventListener('mousemove', function () { if (active()) showUi(); });

    /* Handle a key in the player; return whether it was used. */
    api.key = function (action) {
      if (!endOverlay.hidden || !offerOverlay.hidden) return false;  // their buttons take the arrows and OK
      if (action === 'ok' || action === 'playpause') toggle();
      else if (action === 'left') seekBy(-SEEK_STEP_S);
      else if (action === 'right') seekBy(SEEK_STEP_S);
      else if (action === 'up' || action === 'down') showUi();
      else return false;
      return true;
    };

    return api;
  })();

  // ------------------------------------------------------------------ the document viewer

  var docViewer = (function () {
    var entry = null;
    var stage = $('doc-stage');
    var api = {};

    function showPage() {
      var pages = entry.asset.pages;
      var page = entry.page;
      $('doc-error').hidden = true;
      docImage.hidden = false;
      docImage.src = pages[page].url;
      docImage.alt = entry.title + ' 第 ' + (page + 1) + ' 页';
      stage.scrollTop = 0;
      $('doc-indicator').textContent = '第 ' + (page + 1) + ' / ' + pages.length + ' 页';
      $('doc-prev').disabled = page === 0;
      $('doc-next').disabled = page === pages.length - 1;
      docPages[entry.asset.url] = page;
      if (page + 1 < pages.length) {
        var next = new Image();
        next.src = pages[page + 1].url;  // so the next flip shows at once
      }
    }

    /* A portrait page fitted to a landscape TV is small: OK fills the width and the arrows scroll. */
    function setZoom(zoomed) {
      entry.zoomed = zoomed;
      docLayer.classList.toggle('zoomed', zoomed);
      $('doc-zoom').textContent = zoomed ? '缩小' : '放大';
      $('doc-hint').textContent = zoomed ? '↑ ↓ 移动　确定 缩小' : '← → 翻页　确定 放大';
      stage.scrollTop = 0;
    }

    api.open = function (e) {
      if (entry === e) return;
      entry = e;
      $('doc-title').textContent = e.title;
      setZoom(!!e.zoomed);
      showPage();
    };

    /* The room turned the page. */
    api.update = function (page) {
      if (!entry || page === entry.page || page < 0 || page >= entry.asset.pages.length) return;
      entry.page = page;
      showPage();
    };

    api.close = function () {
      entry = null;
      docImage.removeAttribute('src');
    };

    /* Turn the page for the whole room. */
    function flip(delta) {
      if (!entry) return;
      var page = entry.page + delta;
      if (page < 0 || page >= entry.asset.pages.length) return;
      roomCommands([['page', { step: delta }]]);
    }

    function scroll(direction) {
      if (entry && entry.zoomed) stage.scrollTop += direction * Math.round(stage.clientHeight * 0.4);
    }

    docImage.addEventListener('error', function () {
      if (!entry || !docImage.getAttribute('src')) return;
      docImage.hidden = true;
      $('doc-error').hidden = false;
    });
    $('doc-prev').addEventListener('click', function () { flip(-1); });
    $('doc-next').addEventListener('click', function () { flip(1); });
    $('doc-zoom').addEventListener('click', function () { if (entry) setZoom(!entry.zoomed); });
    $('doc-exit').addEventListener('click', back);

    api.key = function (action) {
      if (action === 'left') flip(-1);
      else if (action === 'right') flip(1);
      else if (action === 'up') scroll(-1);
      else if (action === 'down') scroll(1);
      else if (action === 'ok') setZoom(!entry.zoomed);
      else return false;
      return true;
    };

    return api;
  })();

  // ------------------------------------------------------------------ keys

  var BACK_CODES = [8, 27, 166, 461, 10009];  // Backspace, Escape, BrowserBack, LG webOS, Samsung Tizen

  function keyAction(event) {
    var k = event.key;
    var c = event.keyCode;
    if (k === 'ArrowUp' || k === 'Up' || c === 38) return 'up';
    if (k === 'ArrowDown' || k === 'Down' || c === 40) return 'down';
    if (k === 'ArrowLeft' || k === 'Left' || c === 37) return 'left';
    if (k === 'ArrowRight' || k === 'Right' || c === 39) return 'right';
    if (k === 'Enter' || k === 'Accept' || k === ' ' || k === 'Spacebar' || c === 13 || c === 32) return 'ok';
    if (k === 'MediaPlayPause' || k === 'MediaPlay' || k === 'MediaPause' || c === 179 || c === 415 || c === 19) {
      return 'playpause';
    }
    if (k === 'MediaFastForward' || c === 417) return 'right';
    if (k === 'MediaRewind' || c === 412) return 'left';
    if (k === 'Escape' || k === 'Esc' || k === 'Backspace' || k === 'GoBack' || k === 'BrowserBack' ||
        BACK_CODES.indexOf(c) >= 0) {
      return 'back';
    }
    return null;
  }

  document.addEventListener('keydown', function (event) {
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    var action = keyAction(event);
    if (!action) return;
    event.preventDefault();  // no native button click, page scroll or history step: we do it
    // A key press lets the browser play sound: the first OK only turns the sound of a muted video on.
    if (player.unmute() && !messageState && (action === 'ok' || action === 'playpause')) return;
    if (action === 'back') {
      back();
      return;
    }
    if (event.repeat && action === 'ok') return;  // a held OK key must not open two screens
    if (isLoading()) return;
    var entry = top();
    if (!messageState && entry && entry.screen === 'player' && player.key(action)) return;
    if (!messageState && entry && entry.screen === 'document' && docViewer.key(action)) return;
    if (action === 'ok') activateFocused();
    else if (action !== 'playpause') moveFocus(action);
  });

  // A stray tap or click must never leave the page without a focused element.
  document.addEventListener('focusin', function (event) {
    var group = focusGroup();
    if (group && group.items && group.items.length && group.items.indexOf(event.target) < 0) {
      setTimeout(refocus, 0);
    }
  });

  backButton.addEventListener('click', back);

  // ------------------------------------------------------------------ start

  /* Show the box's rooms to choose from (note says why, if the one asked for is not there). */
  function chooseRoom(note) {
    if (messageState) hideMessage();
    load('/api/v1/rooms', function (data) {
      replaceAll({ screen: 'rooms', rooms: data.rooms || [], note: note, crumbs: ['选择教室'], index: 0 }, true);
    });
  }

  /* Pick the room: ?room=NAME, else the one chosen before, else the only one, else ask. */
  function pickRoom() {
    var asked = pageParam('room');
    var before = remembered(STORE_ROOM);
    load('/api/v1/rooms', function (data) {
      var rooms = data.rooms || [];
      var names = rooms.map(function (r) { return r.name; });
      if (asked && names.indexOf(asked) >= 0) follow(asked);
      else if (!asked && before && names.indexOf(before) >= 0) follow(before);
      else if (!asked && names.length === 1) follow(names[0]);
      else {
        var note = asked ? '这台教学盒子上没有“' + asked + '”，请从下面选择' : null;
        replaceAll({ screen: 'rooms', rooms: rooms, note: note, crumbs: ['选择教室'], index: 0 }, true);
      }
    });
  }

  function start() {
    if (messageState) hideMessage();
    if (room.name) openLevel(0, {}, [], true);
    else pickRoom();
  }

  start();
})();
