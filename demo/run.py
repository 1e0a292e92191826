"""
The clientproxy demo: a throwaway Prosody on loopback, the component run as
`twistd -n clientproxy`, a sample implementing client with two resources,
and a requester. It prints the exchange, then cleans everything up.

    bash tools/setup.sh && python3 demo/run.py
"""

import os
import shutil
import sys

from twisted.internet import defer, protocol, task
from twisted.words.xish import domish

from clientproxy.testing.client import Client, requestFor, resultFor
from clientproxy.testing.prosody import ThrowawayProsody

COMPONENT = "proxy.localhost"
TARGET = "svc@localhost"
SECRET = "demo-secret"
NS_WHOAMI = "urn:example:whoami"
#: Seconds any step of the demo may take.
STEP = 15


def show(who, direction, stanza):
    print("    %-24s %s %s" % (who, direction, stanza.toXml()))


def whoami(resource):
    """
    The sample service of the implementing client: answers
    <query xmlns='urn:example:whoami'/> with who asked (as the component's
    encoded address tells it) and which resource answered.
    """
    me = TARGET + "/" + resource

    def onRequest(iq):
        show(me, "<-", iq)
        reply = resultFor(iq)
        query = reply.addElement((NS_WHOAMI, "query"))
        query.addElement("asked-by", content=iq["from"].split("/", 1)[1])
        query.addElement("answered-by", content=resource)
        show(me, "->", reply)
        return reply

    return onRequest


def answeredBy(reply):
    for element in reply.firstChildElement().elements():
        if element.name == "answered-by":
            return str(element)


class ComponentProcess(protocol.ProcessProtocol):
    """
    `twistd -n clientproxy ...`, with its own log lines shown as they come.

    @ivar knows: resource count to a Deferred that fires once the
        component's log says it knows that many resources.
    """

    def __init__(self):
        self.ended = defer.Deferred()
        self.knows = {}

    def outReceived(self, data):
        for line in data.decode("utf-8", "replace").splitlines():
            if "[clientproxy." in line:
                print("    [component] " + line.split("] ", 1)[-1])
            for count, d in list(self.knows.items()):
                if ("; %d in all" % count) in line or ("; %d left" % count) in line:
                    del self.knows[count]
                    d.callback(None)

    errReceived = outReceived

    def resources(self, reactor, count):
        d = self.knows[count] = defer.Deferred()
        return d.addTimeout(STEP, reactor)

    def processEnded(self, reason):
        self.ended.callback(None)


@defer.inlineCallbacks
def ask(alice, n):
    iq = requestFor(COMPONENT, domish.Element((NS_WHOAMI, "query")), stanzaID="req-%d" % n)
    show(alice.jid.full(), "->", iq)
    reply = yield alice.sendRequest(iq)
    show(alice.jid.full(), "<-", reply)
    return reply


@defer.inlineCallbacks
def main(reactor):
    server = ThrowawayProsody({COMPONENT: SECRET})
    process = ComponentProcess()
    component = None
    clients = []
    try:
        print("1. A throwaway Prosody on 127.0.0.1: port %d for clients, %d for components"
              % (server.c2sPort, server.componentPort))
        for user in ("svc", "alice"):
            server.register(user, "pw")
        yield server.start()

        print("2. The implementing client %s logs in twice: resources a and b" % TARGET)
        for resource in ("a", "b"):
            client = Client(TARGET + "/" + resource, "pw", "127.0.0.1", server.c2sPort,
                            onRequest=whoami(resource))
            clients.append((yield client.connect()))

        print("3. The component starts: twistd -n clientproxy --jid %s --target %s ..."
              % (COMPONENT, TARGET))
        print("   It asks %s for a presence subscription (the clients approve it)," % TARGET)
        print("   then probes, and so learns both resources.")
        secretFile = os.path.join(server.directory, "secret")
        with open(secretFile, "w") as f:
            f.write(SECRET + "\n")
        learnt = process.resources(reactor, 2)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            twistd = shutil.which("twistd")
        component = reactor.spawnProcess(
            process, twistd,
            [twistd, "-n", "--pidfile=", "clientproxy",
             "--jid", COMPONENT, "--target", TARGET, "--secret-file", secretFile,
             "--port", str(server.componentPort), "--timeout", "5"],
            env=dict(os.environ), path=server.directory,
        )
        yield learnt

        print("4. alice@localhost/laptop asks the service address %s, four times:" % COMPONENT)
        alice = Client("alice@localhost/laptop", "pw", "127.0.0.1", server.c2sPort)
        clients.append((yield alice.connect()))
        answers = []
        for n in range(1, 5):
            print("   request %d" % n)
            reply = yield ask(alice, n)
            if reply["type"] != "result":
                raise RuntimeError("demo: unexpected answer " + reply.toXml())
            answers.append(answeredBy(reply))
        print("   answered by: %s (a random resource each time)" % ", ".join(answers))

        print("5. Resource b logs out; the next request still gets an answer")
        left = process.resources(reactor, 1)
        yield clients[1].disconnect()
        yield left
        yield ask(alice, 5)

        print("6. Resource a logs out too: the component answers service-unavailable itself")
        left = process.resources(reactor, 0)
        yield clients[0].disconnect()
        yield left
        yield ask(alice, 6)
        print("Demo done; cleaning up.")
    finally:
        for client in clients:
            yield client.disconnect()
        if component is not None and not process.ended.called:
            component.signalProcess("TERM")
            yield process.ended
        yield server.stop()
        server.cleanUp()


if __name__ == "__main__":
    task.react(main)
