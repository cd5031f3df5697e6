import { jsonString } from '../../src/audit/json';

/** JSON.stringify with the line breaks it leaves raw escaped: what every audit string must read as. */
function reference(s: string): string {
  return JSON.stringify(s).replace(
    /[\u0085\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

describe('audit JSON strings', () => {
  test('every UTF-16 code unit, alone and inside text, is written as JSON.stringify writes it (line breaks escaped)', () => {
    for (let c = 0; c <= 0xffff; c++) {
      const unit = String.fromCharCode(c);
      expect(jsonString(unit)).toBe(reference(unit));
      const inside = `spiffe://shop.example/ns/a${unit}b`;
      expect(jsonString(inside)).toBe(reference(inside));
    }
  });

  test('surrogate pairs stay raw; lone halves are escaped; the result always parses back', () => {
    for (const s of ['😀', 'a😀b', '\ud83d', 'x\ude00', '\ude00\ud83d', '', 'plain/path-1_2.3~']) {
      expect(jsonString(s)).toBe(reference(s));
      expect(JSON.parse(jsonString(s))).toBe(s);
    }
  });
});
