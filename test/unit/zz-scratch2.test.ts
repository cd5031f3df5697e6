import { compileCondition } from '../../src/policy/conditions';
test('s', () => {
  const cases = ['('.repeat(1000) + 'true' + ')'.repeat(1000), Array(400).fill('1').join(' + ') + ' > 0', 'x'.repeat(3000) + ' == 1', 'request.headers["' + 'a'.repeat(3000) + '"] == 1', 'request.method == "a" ||', '"\\u00e9" == request.method && request.method == 1', 'metadata.x', 'metadata.x == 1', '[1,2].map(x, x).size() == 1', 'request.method.matches("a")', '"matches" == request.method && request.path.matches("a")', 'request.method == "GET" ? true : 1', 'has(request.nope)', 'request.headers.nope == "a"', 'dyn(request).matches', 'request.path.startsWith("/a")', 'size(request.method) == 1u', '@', 'request.method == \'a\n\'', 'caller.segments[1] != "support" || request.headers[?"x-tenant"].orValue("") == caller.segments[3]'];
  for (const c of cases) console.log(JSON.stringify(c.slice(0, 80)), JSON.stringify(compileCondition(c)).slice(0, 400));
});
