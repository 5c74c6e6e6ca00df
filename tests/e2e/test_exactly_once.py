"""One copy per mailbox per message (issue 12): a recipient named directly
and through an alias (or through two aliases, or as +extension) gets one
copy, and every recipient of the envelope is settled; a queued message's
Maildir file is named after its queue id, so that a repeated delivery
finds it instead of writing a second one."""
import smtplib

import pytest

from util import wait_for

MSG = (b"From: Sender <sender@example.com>\r\n"
       b"To: Team <team@example.org>\r\n"
       b"Subject: once\r\n"
       b"\r\n"
       b"One copy each.\r\n")


@pytest.fixture
def team(inst):
    for user in ("alice@example.org", "bob@example.org"):
        inst.add_user(user, "pw")
    inst.add_alias("team@example.org: alice@example.org, bob")
    inst.add_alias("leads@example.org: Alice+leads")
    return inst


def queued(inst):
    env = inst.queue / "env"
    return sorted(env.iterdir()) if env.is_dir() else []


@pytest.mark.parametrize("delivery", ["background", "queue"])
def test_direct_and_alias_one_copy(team, delivery):
    inst = team
    inst.configure(main={"delivery": delivery})
    inst.start_smtpd()
    rcpts = ["alice@example.org", "team@example.org", "leads@example.org",
             "Alice+x@example.org"]
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        assert s.sendmail("sender@example.com", rcpts, MSG) == {}
    if delivery == "queue":
        inst.run("runq", check=True)
    wait_for(lambda: queued(inst) == [])
    alice = inst.messages("alice@example.org")
    assert len(alice) == 1, alice
    assert len(inst.messages("bob@example.org")) == 1
    # the markers in tmp/ went once the queue recorded the deliveries
    for user in ("alice@example.org", "bob@example.org"):
        assert list((inst.maildir(user) / "tmp").iterdir()) == []
    log = inst.log_text()
    # every recipient settled: the duplicates say why they got no copy
    # (alice, named directly and by team and leads, is not added again:
    # skipped twice; Alice+x reaches her mailbox: same mailbox)
    assert log.count("same mailbox as <") == 1, log
    assert log.count("status=skipped (already a recipient") == 2, log


def test_deliver_agent_one_copy(team):
    inst = team
    inst.run("deliver", "alice@example.org", "team@example.org",
             "ALICE+y@example.org", input=MSG, check=True)
    assert len(inst.messages("alice@example.org")) == 1
    assert len(inst.messages("bob@example.org")) == 1


def test_maildir_name_is_the_queue_id(team):
    inst = team
    inst.configure(main={"delivery": "queue"})
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("sender@example.com", ["bob@example.org"], MSG)
    [qid] = [p.name for p in queued(inst)]
    inst.run("runq", check=True)
    [path] = inst.messages("bob@example.org")
    usec = int(qid[:13], 16)
    stem = f"{usec // 1000000}.M{usec % 1000000}Q{qid[13:]}."
    assert path.name.startswith(stem), (path.name, qid)
    # the marker in tmp/ went once the queue recorded the delivery
    assert list((inst.maildir("bob@example.org") / "tmp").iterdir()) == []
