(markdown) => {
  // "Exportera samtalet": the conversation (made into markdown by the Python handler) as a .md file.
  if (!markdown) return markdown;
  const day = new Date().toISOString().slice(0, 10);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([markdown], {type: 'text/markdown;charset=utf-8'}));
  link.download = `samtal-${day}.md`;
  document.body.appendChild(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  return markdown;
}
