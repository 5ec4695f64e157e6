// The chat's behaviour in the browser (put into the page's <head> by rag/web/app.py): citations that
// open their source card and lead back, the newest turn scrolled into view with focus kept sensible,
// and Gradio's hard-coded English accessibility texts in Swedish. Works the same in the page, in an
// iframe and in the <gradio-app> web component (no shadow DOM there).
(() => {
  if (window.__ragChat) return;
  window.__ragChat = true;

  const byId = (node, id) => {
    const root = node.getRootNode ? node.getRootNode() : document;
    return (root.getElementById ? root : document).getElementById(id);
  };

  // [n] opens its source card and focuses it; "Tillbaka till svaret" returns focus to the [n].
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a.rag-cite, a.rag-back');
    if (!link) return;
    event.preventDefault();
    const target = byId(link, decodeURIComponent((link.getAttribute('href') || '').slice(1)));
    if (!target) return;
    if (link.classList.contains('rag-cite')) {
      target.open = true;
      target.scrollIntoView({block: 'nearest'});
      const summary = target.querySelector('summary');
      if (summary) summary.focus({preventScroll: true});
    } else {
      target.scrollIntoView({block: 'nearest'});
      target.focus({preventScroll: true});
    }
  }, true);

  // Swedish whatever the browser's language. Gradio takes its locale from navigator.language (an
  // English browser got <html lang="en"> and "Like"/"Dislike"); its own changeLocale, from the module
  // the page has already loaded, switches texts and <html lang> to Swedish, again whenever anything
  // (a later Gradio setup) switches them back.
  const LOCALE = 'sv';
  let switching = false;
  const pinLocale = () => {
    if (document.documentElement.lang === LOCALE || switching) return;
    const core = performance.getEntriesByType('resource').map((e) => e.name)
      .find((name) => /\/assets\/core-[\w-]+\.js$/.test(name));
    if (!core) return; // Gradio not loaded yet: its first locale change calls this again
    switching = true;
    import(core)
      .then((gradio) => gradio.changeLocale && gradio.changeLocale(LOCALE))
      .catch(() => {})
      .finally(() => { switching = false; });
  };
  new MutationObserver(pinLocale).observe(document.documentElement, {attributes: true, attributeFilter: ['lang']});

  // Always the light theme, also with the system in dark mode: Gradio's dark theme left the intro
  // text at 1.85:1 and the cards' dates dim (WCAG 1.4.3). Gradio marks dark mode with class "dark" on
  // <body> (or on the embedding element's parent); it is taken off whenever it is put on.
  const forceLight = () => {
    document.querySelectorAll('.dark').forEach((e) => e.classList.remove('dark'));
  };
  new MutationObserver(forceLight).observe(document.documentElement,
    {subtree: true, attributes: true, attributeFilter: ['class'], attributeOldValue: false});

  // Printing: every source card open on paper (print.css also shows closed cards' passages), closed
  // again afterwards.
  let openedForPrint = [];
  window.addEventListener('beforeprint', () => {
    openedForPrint = [...document.querySelectorAll('details.rag-card:not([open])')];
    openedForPrint.forEach((card) => { card.open = true; });
  });
  window.addEventListener('afterprint', () => {
    openedForPrint.forEach((card) => { card.open = false; });
    openedForPrint = [];
  });

  // The like/dislike buttons: Swedish names also once pressed (Gradio hard-codes "Liked"/"Disliked"),
  // and aria-pressed, which Gradio shows only by the icon's colour.
  const FEEDBACK = {Like: 'Gilla', Liked: 'Gilla', Gilla: 'Gilla', Dislike: 'Ogilla', Disliked: 'Ogilla', Ogilla: 'Ogilla'};
  const fixFeedback = (button) => {
    const name = FEEDBACK[button.getAttribute('aria-label')];
    if (!name) return;
    const pressed = /color-accent/.test(button.getAttribute('style') || '') ? 'true' : 'false';
    if (button.getAttribute('aria-label') !== name) button.setAttribute('aria-label', name);
    if (button.getAttribute('title') !== name) button.setAttribute('title', name);
    if (button.getAttribute('aria-pressed') !== pressed) button.setAttribute('aria-pressed', pressed);
    button.classList.add('rag-feedback-button');
  };

  // Gradio's English (or raw-HTML) accessibility texts, put right whenever Gradio renders them.
  const SWEDISH_TEXT = {'Loading content': 'Hämtar svaret …'};
  const fixLabels = (scope) => {
    pinLocale();
    scope.querySelectorAll('#rag-chat button[aria-label]').forEach(fixFeedback);
    scope.querySelectorAll('[aria-label]').forEach((e) => {
      const label = e.getAttribute('aria-label');
      if (/^(bot|user)'s message/.test(label)) e.removeAttribute('aria-label'); // our HTML as a label
      else if (/^Select example \d+/.test(label)) e.removeAttribute('aria-label'); // its text names it
      else if (label === 'chatbot conversation') e.setAttribute('aria-label', 'Samtal');
      else if (label === 'Loading response') e.setAttribute('aria-label', 'Svaret hämtas');
    });
    scope.querySelectorAll('.examples[role="list"]').forEach((e) => {
      e.setAttribute('role', 'group'); // buttons are not list items (axe: aria-required-children)
      e.setAttribute('aria-label', 'Exempelfrågor');
    });
    scope.querySelectorAll('.sr-only, .rag-sr').forEach((e) => {
      const swedish = SWEDISH_TEXT[e.textContent.trim()];
      if (swedish) e.textContent = swedish;
    });
    // The filter chips: named for what pressing them does ("Ta bort filtret År 2017"), the ✕ unread.
    scope.querySelectorAll('#rag-chips button.rag-chip').forEach((chip) => {
      const name = `Ta bort filtret ${chip.textContent.replace('✕', '').trim()}`;
      if (chip.getAttribute('aria-label') !== name) chip.setAttribute('aria-label', name);
    });
    // A multiselect's "remove" control is titled "Ta bort 0" (the choice's index): name the choice.
    scope.querySelectorAll('.token').forEach((token) => {
      const name = (token.querySelector('span') || token).textContent.trim();
      const wanted = `Ta bort ${name}`;
      token.querySelectorAll('[title^="Ta bort"], [title^="Remove"]').forEach((e) => {
        if (e.getAttribute('title') !== wanted) e.setAttribute('title', wanted);
        if (e.getAttribute('aria-label') !== wanted) e.setAttribute('aria-label', wanted);
      });
    });
    // The footer's links (the reports, the accessibility statement) and the source cards' "Läs hela
    // rapporten": same tab (Gradio opens markdown links in a new one), and relative to the app rather
    // than to an intranet page that embeds it. The relative href is kept in data-rag-href, since the
    // link's own is made absolute here.
    const appLinks = '#rag-footer a[href$="tillganglighet"], #rag-footer a[href$="rapporter"], a.rag-report-link';
    scope.querySelectorAll(appLinks).forEach((link) => {
      const app = link.closest('gradio-app');
      const root = (app && app.getAttribute('src')) || (window.gradio_config && window.gradio_config.root) || location.href;
      if (!link.dataset.ragHref) link.dataset.ragHref = link.getAttribute('href') || '';
      const href = new URL(link.dataset.ragHref, String(root).replace(/\/?$/, '/')).href;
      if (link.href !== href) link.href = href;
      if (link.hasAttribute('target')) link.removeAttribute('target');
    });
    const status = document.getElementById('rag-status');
    if (status && !status.hasAttribute('role')) {
      status.setAttribute('role', 'status');
      status.setAttribute('aria-live', 'polite');
    }
  };

  // The newest turn: when a question is sent and when its answer is done, scroll the chat panel (and,
  // if needed, the page) so the question and the start of its answer are in view. Not while the user
  // is in an earlier part of the chat (reading a source card): scrolling would pull the text away.
  let answers = 0;
  let pending = 0;
  const scroller = (node) => {
    for (let e = node.parentElement; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (/(auto|scroll)/.test(style.overflowY) && e.scrollHeight > e.clientHeight) return e;
    }
    return null;
  };
  const reading = (chat, latest) => {
    const active = document.activeElement;
    return active && chat.contains(active) && !(latest && latest.contains(active));
  };
  const showTurn = (chat, latest) => {
    const row = latest.closest('.message-row') || latest;
    const question = row.previousElementSibling || row;
    const panel = scroller(latest);
    if (panel) panel.scrollTop += question.getBoundingClientRect().top - panel.getBoundingClientRect().top - 8;
    const box = chat.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) chat.scrollIntoView({block: 'start'});
  };
  const focusAfterAnswer = (chat) => {
    const active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return; // never steal focus
    const box = document.querySelector('#rag-question textarea');
    if (box) box.focus({preventScroll: true}); // the example button pressed is gone: back to the box
  };
  const onChange = () => {
    fixLabels(document);
    const chat = document.getElementById('rag-chat');
    if (!chat) return;
    const all = chat.querySelectorAll('.rag-answer');
    const done = chat.querySelectorAll('.rag-answer:not(.rag-pending)').length;
    const waiting = all.length - done;
    const latest = all[all.length - 1];
    if (latest && (done > answers || waiting > pending) && !reading(chat, latest)) {
      requestAnimationFrame(() => showTurn(chat, latest));
      if (done > answers) focusAfterAnswer(chat);
    }
    answers = done;
    pending = waiting;
  };
  // In an iframe: tell the host page that the chat is there, so it knows the frame was allowed to
  // load at all (examples/host.html says why it is blank when no word comes). Nothing else is sent.
  const tellHost = () => {
    if (window.parent !== window) window.parent.postMessage({type: 'tyreso-rag:ready'}, '*');
  };
  const start = () => {
    new MutationObserver(onChange).observe(document.documentElement,
      {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-label', 'title', 'style']});
    onChange();
    tellHost();
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
