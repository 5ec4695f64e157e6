(value) => {
  // "Kopiera svaret": copies the last answer with its sources, then hands `value` on to the Python
  // handler, which says in the status line what happened (also when there is nothing to copy).
  if (!value) return value;
  const done = () => {
    const b = document.querySelector('#rag-copy');
    if (!b) return;
    const label = b.textContent;
    b.textContent = 'Kopierat!';
    setTimeout(() => (b.textContent = label), 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(value).then(done);
  } else {
    const area = document.createElement('textarea');
    area.value = value;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    document.execCommand('copy');
    area.remove();
    done();
  }
  return value;
}
