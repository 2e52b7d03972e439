"""The Elasticsearch-API stand-in of the real-node tests, as an image hack/images.py builds.

No build of Elasticsearch can be had here, so the trace path is proven against OpenSearch 2.19,
which Maven Central carries as plain jars: the server `org.opensearch:opensearch` with its plugin
class loader and log4j on the class path, and the `transport-netty4-client` jars (its HTTP and
transport layer) as a module in `modules/transport-netty4`, given the plugin descriptor and
security policy its distribution would ship. Nothing else of a distribution is needed for the
index templates, bulk writes and searches Jaeger makes.

The JRE is Debian's openjdk-17-jre-headless and the TLS front is Debian's nginx (basic auth,
HTTPS), both unpacked from their packages like the Python images' interpreter. One image holds
both; the test runs them as two containers of one pod: nginx on 9200 in front of OpenSearch on the
pod's loopback (the test's docstring says what this does not prove).

Jars are fetched by `mvn dependency:copy-dependencies` on a generated pom (Maven's own client and
its ~/.m2 cache) into ~/.cache/agentobs/opensearch-<version>/, once per version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from images import CACHE, Image, Layer, cached_layer, debian_layer, digest_of, run

VERSION = "2.19.6"
LOG4J = "2.25.4"  # the log4j-api version opensearch 2.19.6 depends on; log4j-core must match it
IMAGE = f"agentobs.local/opensearch-standin:{VERSION}"
HOME = "/usr/share/opensearch"
JAVA = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
NGINX = "/usr/sbin/nginx"
FILES = Path(__file__).resolve().parent / "images" / "opensearch"
JARS = CACHE.parent / f"opensearch-{VERSION}"
# What `java` and `nginx` load; the JRE's other dependencies (fonts, sound, cups, ...) serve AWT
# and printing, which a headless server never touches.
JRE_DEBS = ["gcc-12-base", "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "openjdk-17-jre-headless"]
NGINX_DEBS = ["libc6", "libcrypt1", "libpcre2-8-0", "libssl3", "zlib1g", "nginx"]
SERVER_DEPS = [("org.opensearch", "opensearch", VERSION), ("org.opensearch", "opensearch-plugin-classloader", VERSION),
               ("org.apache.logging.log4j", "log4j-core", LOG4J)]
NETTY_DEPS = [("org.opensearch.plugin", "transport-netty4-client", VERSION)]
JVM_OPTIONS = ["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Djava.io.tmpdir=/tmp",
               "-Djna.nosys=true", "-Dlog4j2.disable.jmx=true", "-Dfile.encoding=UTF-8",
               f"-Dopensearch.path.home={HOME}", f"-Dopensearch.path.conf={HOME}/config",
               "-Dopensearch.distribution.type=tar", "-Dopensearch.bundled_jdk=false"]


def maven_jars(name: str, dependencies: list[tuple[str, str, str]]) -> Path:
    """The runtime jars of `dependencies` and their transitive dependencies, fetched once."""
    out = JARS / name
    if (out / ".complete").exists():
        return out
    deps = "".join(f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
                   "</dependency>" for g, a, v in dependencies)
    JARS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=JARS) as tmp:
        Path(tmp, "pom.xml").write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            f"<groupId>io.agentobs.standin</groupId><artifactId>{name}</artifactId><version>1</version>"
            f"<packaging>pom</packaging><dependencies>{deps}</dependencies></project>")
        jars = Path(tmp) / "jars"
        run("mvn", "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={jars}", cwd=Path(tmp))
        (jars / ".complete").write_text("\n".join(sorted(p.name for p in jars.glob("*.jar"))) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(jars, out)
    return out


def debian_packages_layer(name: str, packages: list[str], check: list[str]) -> Layer:
    """Debian packages unpacked, then `check` run in a chroot of the tree."""
    return debian_layer(packages, ["debian", name, *check], lambda tree: run("chroot", tree, *check))


def opensearch_layer() -> Layer:
    server = maven_jars("server", SERVER_DEPS)
    netty = maven_jars("transport-netty4", NETTY_DEPS)
    files = sorted(FILES.iterdir())

    def build(tree: Path) -> None:
        home = tree / HOME.lstrip("/")
        for d in ("bin", "plugins", "lib", "modules/transport-netty4"):
            (home / d).mkdir(parents=True)
        for jar in server.glob("*.jar"):
            shutil.copy2(jar, home / "lib" / jar.name)
        module = home / "modules" / "transport-netty4"
        for jar in netty.glob("*.jar"):
            shutil.copy2(jar, module / jar.name)
        (module / "plugin-descriptor.properties").write_text(
            "description=OpenSearch's Netty 4 HTTP and transport layer\n"
            f"version={VERSION}\nname=transport-netty4\nclassname=org.opensearch.transport.Netty4Plugin\n"
            f"java.version=11\nopensearch.version={VERSION}\nextended.plugins=\nhas.native.controller=false\n")
        shutil.copy2(FILES / "transport-netty4.policy", module / "plugin-security.policy")
        # OpenSearch writes its keystore into the config directory at its first start, and its
        # data and logs beside it: writable by whichever non-root user the pod runs as.
        for d in ("config", "data", "logs"):
            (home / d).mkdir(exist_ok=True)
            (home / d).chmod(0o1777)
        for name in ("opensearch.yml", "log4j2.properties"):
            shutil.copy2(FILES / name, home / "config" / name)
        (home / "config" / "jvm.options").write_text("# options are on the image's command line\n")

    return cached_layer(digest_of("opensearch", VERSION, (server / ".complete").read_text(),
                                  (netty / ".complete").read_text(), *files), build)


def image() -> Image:
    """OpenSearch as the entrypoint; the pod runs nginx from the same image as a second container."""
    # The launcher finds libjli through $ORIGIN, which glibc resolves by /proc (absent in a bare
    # chroot; present in a container): the check names the library directory to the loader.
    jre_lib = JAVA.rsplit("/bin/", 1)[0] + "/lib"
    layers = [debian_packages_layer("jre", JRE_DEBS, ["/lib64/ld-linux-x86-64.so.2", "--library-path", jre_lib,
                                             JAVA, "-version"]),
              debian_packages_layer("nginx", NGINX_DEBS, [NGINX, "-V"]),
              opensearch_layer()]
    return Image(IMAGE, layers, entrypoint=[JAVA, *JVM_OPTIONS, "-cp", f"{HOME}/lib/*",
                                            "org.opensearch.bootstrap.OpenSearch"],
                 workdir=HOME, env=["PATH=/usr/sbin:/usr/bin:/bin", "LANG=C.UTF-8"])
