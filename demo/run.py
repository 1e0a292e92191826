"""
The clientproxy demo: a throwaway Prosody on loopback, the component run as
`twistd -n clientproxy`, a sample implementing client with two resources,
and a requester. It prints the exchange (requests, a message fanned out, an
answer and its mirror, a resource leaving), then cleans everything up.

    bash tools/setup.sh && .venv/bin/python demo/run.py
"""

import os

from twisted.internet import defer, task
from twisted.words.xish import domish

from clientproxy.testing.client import Client, capsFor, requestFor, resultFor, supporting
from clientproxy.testing.prosody import ThrowawayProsody
from clientproxy.testing.twistd import ComponentProcess

COMPONENT = "proxy.localhost"
TARGET = "svc@localhost"
SECRET = "demo-secret"
NS_WHOAMI = "urn:example:whoami"


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


def advertised(resource):
    """
    The sample client as a client that advertises what it supports: its
    presence carries XEP-0115 caps, it answers disco#info queries with
    urn:example:whoami, and serves that namespace with L{whoami}.
    """
    me = TARGET + "/" + resource
    serve = supporting([NS_WHOAMI], whoami(resource))

    def onRequest(iq):
        reply = serve(iq)
        if iq.firstChildElement().name == "query" and reply.firstChildElement() is not None:
            if reply.firstChildElement().uri == "http://jabber.org/protocol/disco#info":
                show(me, "<-", iq)
                show(me, "->", reply)
        return reply

    return onRequest


def answeredBy(reply):
    for element in reply.firstChildElement().elements():
        if element.name == "answered-by":
            return str(element)


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
    process = ComponentProcess(echo=lambda line: print("    [component] " + line))
    clients = []
    try:
        print(
            "1. A throwaway Prosody on 127.0.0.1: port %d for clients, %d for components"
            % (server.c2sPort, server.componentPort)
        )
        for user in ("svc", "alice"):
            server.register(user, "pw")
        yield server.start()

        print("2. The implementing client %s logs in twice: resources a and b" % TARGET)
        for resource in ("a", "b"):
            client = Client(
                TARGET + "/" + resource,
                "pw",
                "127.0.0.1",
                server.c2sPort,
                onRequest=advertised(resource),
                caps=capsFor([NS_WHOAMI]),
            )
            clients.append((yield client.connect()))

        print(
            "3. The component starts: twistd -n clientproxy --jid %s --target %s ..."
            % (COMPONENT, TARGET)
        )
        print("   It asks %s for a presence subscription (the clients approve it)," % TARGET)
        print("   then probes, and so learns both resources; it asks one of them what it")
        print("   supports (disco#info about its caps ver: the other announces the same ver).")
        secretFile = os.path.join(server.directory, "secret")
        with open(secretFile, "w") as f:
            f.write(SECRET + "\n")
        learnt = process.waitForResources(2)
        process.start(
            [
                "--jid",
                COMPONENT,
                "--target",
                TARGET,
                "--secret-file",
                secretFile,
                "--port",
                str(server.componentPort),
                "--data-dir",
                server.directory,
                "--timeout",
                "5",
            ],
            server.directory,
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

        print("5. alice sends a message: every resource gets it; a answers, b sees a mirror")
        a, b = clients[0], clients[1]
        seen = defer.DeferredList(
            [
                client.waitFor(lambda m: m.name == "message").addTimeout(15, reactor)
                for client in (a, b)
            ]
        )
        alice.sendMessage(COMPONENT, "Is anyone there?")
        for (_, message), name in zip((yield seen), "ab"):
            show(TARGET + "/" + name, "<-", message)
        mirrored = b.waitFor(lambda m: m.name == "message").addTimeout(15, reactor)
        answered = alice.waitFor(lambda m: m.name == "message").addTimeout(15, reactor)
        a.sendMessage(COMPONENT + "/" + alice.jid.full(), "Yes, resource a here.")
        show(alice.jid.full(), "<-", (yield answered))
        show(TARGET + "/b", "<-", (yield mirrored))

        print("6. Resource b logs out; the next request still gets an answer")
        left = process.waitForResources(1)
        yield clients[1].disconnect()
        yield left
        yield ask(alice, 5)

        print("7. Resource a logs out too: the component answers service-unavailable itself")
        left = process.waitForResources(0)
        yield clients[0].disconnect()
        yield left
        yield ask(alice, 6)
        print("Demo done; cleaning up.")
    finally:
        for client in clients:
            yield client.disconnect()
        yield process.stop()
        yield server.stop()
        server.cleanUp()


if __name__ == "__main__":
    task.react(main)
