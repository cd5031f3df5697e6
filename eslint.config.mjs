// Lint runs in `make test`. Formatting is prettier's job (eslint-config-prettier turns off the
// style rules that would fight it).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

const ADAPTERS = [
  '**/server',
  '**/server/**',
  '**/cli/**',
  '**/cluster/**',
  '**/admin/**',
  '**/app',
  '**/serving/**',
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.tools/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      'no-constant-condition': ['error', { checkLoops: false }],
      // Sanitisers for terminals, XML and logs match control characters on purpose.
      'no-control-regex': 'off',
      // A closure may read a binding that is assigned once, later, after construction.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // The hot path evaluates compiled policies; reading and checking policy files stays on the
    // load side, so no request can reach a YAML parser or a document type.
    files: ['src/policy/features/**/*.ts', 'src/policy/authorize.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/document', '**/document/**', '**/compile', '**/compile/**'],
              message:
                'features/ and authorize evaluate compiled policies: they never read documents',
            },
            { group: ['yaml'], message: 'no YAML on the hot path' },
            {
              group: ADAPTERS,
              message:
                'the decision does not import its adapters (server, cli, cluster, admin, app)',
            },
          ],
        },
      ],
    },
  },
  {
    // The decision (envoy boundary → pipeline stages → policy, identity, limits, audit) knows
    // nothing of the adapters around it: the gRPC server, the HTTP mode, the CLI, the cluster
    // and the admin API call into it, never the other way.
    files: [
      'src/envoy/**/*.ts',
      'src/request/**/*.ts',
      'src/pipeline/**/*.ts',
      'src/policy/**/*.ts',
      'src/identity/**/*.ts',
      'src/ratelimit/**/*.ts',
      'src/quarantine/**/*.ts',
      'src/grants/**/*.ts',
      'src/respond/**/*.ts',
      'src/audit/**/*.ts',
    ],
    ignores: ['src/policy/features/**/*.ts', 'src/policy/authorize.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ADAPTERS,
              message:
                'the decision does not import its adapters (server, cli, cluster, admin, app)',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // grpc-js generated clients are indexed by method name; tests call them untyped.
      '@typescript-eslint/no-unsafe-function-type': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    files: ['k6/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: { __ENV: 'readonly', __VU: 'readonly', __ITER: 'readonly' },
    },
  },
  {
    files: ['bench/**/*.js', 'scripts/**/*.js', '*.js', 'envoy/**/*.js', 'examples/**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        __dirname: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        gc: 'readonly',
        fetch: 'readonly',
        URL: 'readonly',
        AbortSignal: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
);
