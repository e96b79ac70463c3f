// The live word and character count, as a person counts: a character is what one sees as
// one (an emoji with its skin tone or ZWJ sequence, a letter with its combining accent, a
// flag), a word is a run of letters between spaces, and each CJK ideograph, kana or
// Hangul syllable is a word of its own (as word processors count them). One pass over
// the UTF-16 units, no regular expression: a million characters take a few milliseconds.

/** Is UTF-16 unit `u` white space (ASCII, no-break, the Unicode spaces, line breaks)? */
function isSpace(u) {
  return (
    u === 0x20 ||
    (u >= 0x09 && u <= 0x0d) ||
    u === 0xa0 ||
    u === 0x1680 ||
    (u >= 0x2000 && u <= 0x200a) ||
    u === 0x2028 ||
    u === 0x2029 ||
    u === 0x202f ||
    u === 0x205f ||
    u === 0x3000
  );
}

/** Is `cp` a character that is a word by itself (CJK ideographs, kana, Hangul)? */
function isWordByItself(cp) {
  return (
    (cp >= 0x3040 && cp <= 0x30ff) || // hiragana, katakana
    (cp >= 0x3400 && cp <= 0x9fff) || // CJK ideographs
    (cp >= 0xac00 && cp <= 0xd7af) || // Hangul syllables
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x20000 && cp <= 0x3134f)
  );
}

/** Does `cp` join the character before it (it draws no character of its own)? */
function extendsCharacter(cp) {
  return (
    (cp >= 0x300 && cp <= 0x36f) || // combining diacritical marks
    (cp >= 0x1ab0 && cp <= 0x1aff) ||
    (cp >= 0x1dc0 && cp <= 0x1dff) ||
    (cp >= 0x20d0 && cp <= 0x20ff) ||
    (cp >= 0xfe00 && cp <= 0xfe0f) || // variation selectors
    (cp >= 0xfe20 && cp <= 0xfe2f) ||
    (cp >= 0x1f3fb && cp <= 0x1f3ff) || // skin tones
    (cp >= 0xe0020 && cp <= 0xe007f) || // emoji tag sequences
    cp === 0x200d
  );
}

const isRegionalIndicator = (cp) => cp >= 0x1f1e6 && cp <= 0x1f1ff;

/** {words, characters} of `text`. */
export function countText(text) {
  let words = 0;
  let characters = 0;
  let inWord = false;
  let joined = false; // the last code point was a ZWJ: the next one joins its character
  let flagHalf = false; // an odd regional indicator: the next one makes the flag with it
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (isSpace(cp)) {
      inWord = joined = flagHalf = false;
      characters += 1;
      continue;
    }
    const extending = extendsCharacter(cp) || joined;
    joined = cp === 0x200d;
    if (extending) continue;
    if (isRegionalIndicator(cp)) {
      flagHalf = !flagHalf;
      if (!flagHalf) continue; // the second half of a flag
    } else flagHalf = false;
    characters += 1;
    if (isWordByItself(cp)) {
      words += 1;
      inWord = false;
    } else if (!inWord) {
      words += 1;
      inWord = true;
    }
  }
  return { words, characters };
}
