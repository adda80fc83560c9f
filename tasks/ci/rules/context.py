"""The context tier: when no rule matched, infer the category from what the job was doing.

Signals, strongest first: the command that failed (GitLab echoes each script line as `$ cmd`;
the last one before the failure is the culprit), the tool it ran (`npm run lint` runs the
project's lint script, `python -m pytest` runs pytest), then the job's name and stage (`lint`,
`unit-tests`, `sast`), and generic error markers in the command's output. The answer carries a
confidence and the reasons, so a comment can say "inferred from the failing command `$ npm run
lint` and stage `lint`, medium confidence" instead of guessing silently.

Written by hand because no maintained library maps CI commands to failure kinds; the tables
below are keyed on tool names, which are stable across versions, never on their output.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from itertools import pairwise

from .facts import LogFacts

COMPILE, TEST, LINT, SECURITY, DEPENDENCY = ("compile_error", "test_failure", "lint_failure",
                                             "security_scan_failure", "dependency_resolution")

# Tools (the program, or "program subcommand") and what a failure of each means.
TOOLS: dict[str, str] = {}
for _category, _names in (
    (SECURITY, "trivy grype snyk gitleaks semgrep bandit checkov tfsec kics safety pip-audit "
               "osv-scanner govulncheck dependency-check dependency-check.sh /analyzer analyzer "
               "gemnasium bundle-audit bundler-audit retire trufflehog detect-secrets brakeman "
               "npm-audit yarn-audit cargo-audit cargo-deny grype-scan"),
    (LINT, "eslint prettier stylelint markdownlint markdownlint-cli2 commitlint ruff flake8 pylint "
           "mypy pyright black isort pycodestyle pydocstyle autopep8 golangci-lint gofmt goimports "
           "staticcheck revive rubocop standardrb erb-lint clippy rustfmt ktlint detekt "
           "checkstyle spotless shellcheck hadolint yamllint tflint phpcs phpstan psalm "
           "php-cs-fixer swiftlint swiftformat pre-commit codespell vale actionlint "
           "editorconfig-checker cargo-clippy cargo-fmt go-vet terraform-fmt helm-lint "
           "dotnet-format buf-lint biome oxlint tslint sqlfluff ansible-lint cspell lint-staged"),
    (TEST, "pytest py.test nose2 nosetests tox nox jest vitest mocha ava karma jasmine "
           "playwright cypress gotestsum go-test cargo-test cargo-nextest rspec minitest phpunit "
           "pest paratest dotnet-test vstest.console ctest bazel-test mix-test flutter-test "
           "dart-test swift-test behave cucumber robot newman testcafe wdio codeceptjs unittest "
           "trial xctest bats prove"),
    (DEPENDENCY, "npm-ci npm-install npm-i yarn-install pnpm-install pip-install pip3-install "
                 "poetry-install poetry-lock uv-sync uv-lock pipenv-install bundle-install "
                 "composer-install composer-update go-mod cargo-fetch dotnet-restore nuget-restore "
                 "mix-deps.get pub-get flutter-pub dart-pub terraform-init helm-dependency "
                 "conda-install conda-env mamba-install bower-install bun-install"),
    (COMPILE, "gcc g++ cc c++ clang clang++ cl make gmake cmake ninja meson scons go-build "
              "go-install cargo-build cargo-check rustc tsc webpack vite rollup esbuild parcel "
              "dotnet-build dotnet-publish msbuild javac kotlinc scalac mvn mvnw gradle gradlew "
              "ant sbt swift-build xcodebuild docker-build docker-buildx podman-build buildah "
              "/kaniko/executor executor kaniko terraform-plan terraform-validate terraform-apply "
              "helm-template helm-package bazel-build bazel mix-compile cabal stack ghc ng "
              "next nuxt gatsby hugo jekyll sphinx-build mkdocs packer ansible-playbook "
              "docker-compose-build nix-build earthly"),
):
    for _name in _names.split():
        TOOLS[_name] = _category

# Words in a script name, make target, job name or stage, and what they point at. Checked in
# this order: "lint-tests" is lint, "test-build" is a test.
NAME_WORDS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (_category, frozenset(_words_of.split())) for _category, _words_of in (
        (SECURITY, "sast dast secret secrets secret_detection dependency_scanning "
                   "container_scanning security audit vuln vulnerability vulnerabilities "
                   "scan scanning trivy grype snyk gitleaks semgrep bandit checkov tfsec "
                   "license_scanning"),
        (LINT, "lint linter linting lints format fmt formatting style prettier eslint "
               "stylelint codestyle code_quality quality typecheck type-check types mypy "
               "ruff flake8 pylint rubocop clippy hadolint shellcheck yamllint "
               "commitlint precommit pre-commit"),
        (TEST, "test tests testing spec specs unit unittest unittests integration e2e "
               "acceptance smoke functional jest pytest rspec phpunit cypress playwright "
               "coverage"),
        (DEPENDENCY, "deps dependencies install bootstrap vendor restore"),
        (COMPILE, "build builds compile compiling assemble package packaging dist bundle "
                  "image docker kaniko release"),
    )
)

# Runners that hand their real work to the next word(s): `npx eslint .` runs eslint.
_PASS_THROUGH = {"sudo", "time", "exec", "env", "nice", "nohup", "xvfb-run", "npx", "pnpx",
                 "bunx", "command", "stdbuf", "ionice", "chronic", "retry", "eatmydata"}
_RUN_PREFIXES = {("poetry", "run"), ("uv", "run"), ("pipenv", "run"), ("bundle", "exec"),
                 ("pnpm", "exec"), ("yarn", "dlx"), ("pdm", "run"), ("hatch", "run"),
                 ("rye", "run"), ("conda", "run"), ("mamba", "run"), ("dotnet", "tool")}
# Tools whose real meaning is their first non-option argument (a script, a target, a task).
_SCRIPT_RUNNERS = {"npm", "yarn", "pnpm", "bun", "make", "gmake", "just", "task", "rake",
                   "invoke", "mage", "tox", "nox", "gradle", "gradlew", "mvn", "mvnw", "lerna",
                   "nx", "turbo", "composer", "bin/rails", "rails", "dotnet", "cargo", "go",
                   "terraform", "helm", "flutter", "dart", "swift", "mix", "docker", "podman",
                   "bazel", "bazelisk", "kubectl", "docker-compose"}
# Build drivers whose failure could be compiling, testing or packaging: a guess, not a fact.
_GENERIC = {"make", "gmake", "mvn", "mvnw", "gradle", "gradlew", "bazel", "sbt", "ant", "mix",
            "cabal", "stack"}
# Runners that run anything: their own name says nothing about what failed.
_OPAQUE = {"docker", "podman", "kubectl", "docker-compose", "helm", "terraform", "go", "cargo",
           "dotnet", "flutter", "dart", "swift", "composer", "bin/rails", "rails"}
_OPTION_WITH_VALUE = {"-e", "-s", "-f", "-C", "-p", "--project", "--filter", "-w", "--workspace",
                      "--prefix", "--file", "--directory", "-t", "--tag", "-c"}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WORD = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)*")


@dataclass(frozen=True)
class CommandInfo:
    tool: str  # what ran, e.g. "eslint", "npm run lint", "pytest"
    category: str | None
    specific: bool  # known tool (pytest) rather than a guess from a script name (npm run check)


@dataclass(frozen=True)
class Inference:
    category: str
    confidence: str  # high | medium | low
    reason: str
    tool: str | None = None


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    # One pipeline or list: the first command decides (`pytest | tee out` runs pytest).
    for i, w in enumerate(words):
        if w in ("|", "||", "&&", ";", "|&"):
            return words[:i]
    return words


def _strip_wrappers(words: list[str]) -> list[str]:
    while words:
        head = words[0].rsplit("/", 1)[-1] if not words[0].startswith("/kaniko") else words[0]
        if _ENV_ASSIGNMENT.match(words[0]) or head in _PASS_THROUGH:
            words = words[1:]
            continue
        if head == "timeout" and len(words) > 2:
            words = words[2:]
            continue
        shell = head in ("bash", "sh", "zsh")
        if shell and len(words) >= 3 and words[1] in ("-c", "-ec", "-xc", "-exc"):
            words = _words(words[2])
            continue
        if shell and len(words) >= 2 and not words[1].startswith("-"):
            words = words[1:]  # `bash ci/run-tests.sh`: the script is what ran
            continue
        if head in ("python", "python3", "py") and len(words) >= 3 and words[1] == "-m":
            words = words[2:]
            continue
        if len(words) >= 2 and (head, words[1]) in _RUN_PREFIXES:
            words = words[2:]
            continue
        return words
    return words


def _first_argument(words: list[str]) -> str | None:
    skip = False
    for w in words[1:]:
        if skip:
            skip = False
            continue
        if w in _OPTION_WITH_VALUE:
            skip = True
            continue
        if w.startswith("-"):
            continue
        return w
    return None


def name_category(name: str | None) -> str | None:
    """What a script, target, job or stage name points at, by its words (None: nothing)."""
    if not name:
        return None
    words = set(_WORD.findall(name.lower().replace("-", "_")))
    words |= {w for part in words for w in part.split("_")}
    words |= {w for part in words for w in part.split(".")}
    for category, vocabulary in NAME_WORDS:
        if words & vocabulary:
            return category
    return None


def command_info(command: str | None) -> CommandInfo | None:
    """The tool a GitLab script line ran, and what its failure means (category None: unknown)."""
    if not command:
        return None
    words = _strip_wrappers(_words(command))
    if not words:
        return None
    program = words[0]
    base = program if program.startswith("/kaniko") else program.rsplit("/", 1)[-1]
    for suffix in (".sh", ".bash", ".py", ".exe", ".cmd", ".bat"):
        if base.endswith(suffix) and base not in TOOLS:
            base = base[: -len(suffix)]
    arg = _first_argument(words)
    runner = base
    if base in ("npm", "pnpm", "bun", "yarn") and arg in ("run", "run-script"):
        runner = f"{base} {arg}"
        arg = _first_argument(words[1:])
    elif base in ("tox", "nox"):  # the environment or session named with -e / -s
        for flag, value in pairwise(words):
            if flag in ("-e", "-s", "--session") and name_category(value) is not None:
                return CommandInfo(f"{base} {flag} {value}", name_category(value), False)
    elif base == "cargo" and arg and arg.startswith("+"):  # cargo +nightly clippy
        arg = _first_argument(words[1:])
    if arg is not None and f"{base}-{arg}" in TOOLS:
        return CommandInfo(f"{base} {arg}", TOOLS[f"{base}-{arg}"], True)
    if base in ("yarn", "bundle") and arg is None:  # bare `yarn` / `bundle` install
        return CommandInfo(base, DEPENDENCY, True)
    if base in _SCRIPT_RUNNERS and arg is not None:
        # `npm test`, `make lint`, `tox -e lint`, `./gradlew check`: the script's name tells.
        guess = name_category(arg)
        if guess is not None:
            return CommandInfo(f"{runner} {arg}", guess, False)
    if base in _OPAQUE:
        return CommandInfo(base if arg is None else f"{base} {arg}", None, False)
    if base in TOOLS:
        return CommandInfo(base, TOOLS[base], base not in _GENERIC)
    guess = name_category(base)  # ./scripts/run-tests, ci/lint
    tool = base if arg is None else f"{base} {arg}"
    return CommandInfo(tool, guess, False)


def infer(facts: LogFacts, *, job_name: str | None, stage: str | None,
          markers: int) -> Inference | None:
    """The context tier's verdict, or None when nothing points anywhere.

    `markers` is how many lines of the failing output carry a generic error marker (error:,
    FAILED, fatal:, ✖ ...): output that says something failed makes the inference firmer."""
    command = facts.command.text if facts.command else ""
    cmd = command_info(command)  # None without a command
    by_name = name_category(job_name)
    by_stage = name_category(stage)
    where = by_name or by_stage
    where_text = (f"job `{job_name}`" if by_name else f"stage `{stage}`") if where else ""
    if cmd is not None and cmd.category is not None:
        agree = where == cmd.category
        if agree and markers:
            confidence = "high" if cmd.specific else "medium"
        elif agree or (cmd.specific and markers):
            confidence = "medium"
        else:
            confidence = "low"
        said = f"inferred from the failing command `$ {_short(command)}`"
        if agree:
            said += f" and {where_text}"
        elif where:
            said += f" ({where_text} suggests {where.replace('_', ' ')})"
        return Inference(cmd.category, confidence, f"{said}, {confidence} confidence", cmd.tool)
    if where is not None:
        said = f"inferred from {where_text} only"
        if cmd is not None:
            said += f" (the failing command `$ {_short(command)}` names no known tool)"
        return Inference(where, "low", f"{said}, low confidence", cmd.tool if cmd else None)
    return None


def _short(command: str, limit: int = 80) -> str:
    command = command.replace("`", "'")
    return command if len(command) <= limit else command[: limit - 1] + "…"
