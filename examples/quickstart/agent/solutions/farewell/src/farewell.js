'use strict';

// Farewells in several languages and styles.
// NOTE: written by the quick start's scripted stand-in agent WITHOUT tests, on purpose:
// the worker's coverage gate must reject this change (line coverage falls below 80%).

const PHRASES = {
  en: { neutral: 'Goodbye', formal: 'Farewell', casual: 'Bye', closingFormal: 'Kind regards', closingCasual: 'Cheers' },
  de: { neutral: 'Auf Wiedersehen', formal: 'Leben Sie wohl', casual: 'Tschüss', closingFormal: 'Mit freundlichen Grüßen', closingCasual: 'Viele Grüße' },
  fr: { neutral: 'Au revoir', formal: 'Adieu', casual: 'Salut', closingFormal: 'Cordialement', closingCasual: 'À bientôt' },
  es: { neutral: 'Adiós', formal: 'Que le vaya bien', casual: 'Chao', closingFormal: 'Atentamente', closingCasual: 'Saludos' },
  it: { neutral: 'Arrivederci', formal: 'ArrivederLa', casual: 'Ciao', closingFormal: 'Cordiali saluti', closingCasual: 'A presto' },
};

const STYLES = ['neutral', 'formal', 'casual'];

function checkName(name) {
  if (name === undefined || name === null) {
    return 'world';
  }
  if (typeof name !== 'string') {
    throw new TypeError(`expected a string name, got ${typeof name}`);
  }
  const trimmed = name.trim();
  if (trimmed === '') {
    return 'world';
  }
  return trimmed;
}

function checkLanguage(language) {
  const lang = (language || 'en').toLowerCase();
  if (!Object.prototype.hasOwnProperty.call(PHRASES, lang)) {
    throw new RangeError(`unknown language ${language}`);
  }
  return lang;
}

function checkStyle(style) {
  const s = style || 'neutral';
  if (!STYLES.includes(s)) {
    throw new RangeError(`unknown style ${style}`);
  }
  return s;
}

function farewell(name, options = {}) {
  const who = checkName(name);
  const lang = checkLanguage(options.language);
  const style = checkStyle(options.style);
  const phrase = PHRASES[lang][style];
  if (options.shout) {
    return `${phrase.toUpperCase()}, ${who.toUpperCase()}!`;
  }
  if (options.question) {
    return `${phrase}, ${who}?`;
  }
  return `${phrase}, ${who}!`;
}

function closingFor(lang, style) {
  if (style === 'formal') {
    return PHRASES[lang].closingFormal;
  }
  if (style === 'casual') {
    return PHRASES[lang].closingCasual;
  }
  return PHRASES[lang].closingFormal;
}

function signOff(lines, options = {}) {
  if (!Array.isArray(lines)) {
    throw new TypeError('expected an array of lines');
  }
  const lang = checkLanguage(options.language);
  const style = checkStyle(options.style);
  const sender = checkName(options.sender);
  const out = lines.map((line) => String(line).trimEnd());
  while (out.length > 0 && out[out.length - 1] === '') {
    out.pop();
  }
  out.push('');
  out.push(`${closingFor(lang, style)},`);
  out.push(sender);
  return out.join('\n');
}

function listLanguages() {
  const result = [];
  for (const code of Object.keys(PHRASES)) {
    result.push({ code, sample: PHRASES[code].neutral });
  }
  result.sort((a, b) => a.code.localeCompare(b.code));
  return result;
}

function describe(language) {
  const lang = checkLanguage(language);
  const p = PHRASES[lang];
  const parts = [];
  for (const style of STYLES) {
    parts.push(`${style}: ${p[style]}`);
  }
  parts.push(`closing: ${p.closingFormal} / ${p.closingCasual}`);
  return parts.join('; ');
}

module.exports = { farewell, signOff, listLanguages, describe };
