//! Turning upstream streams that send bare deltas (OpenAI chunks, `echo`) into well-formed
//! neutral events: every block started before its first delta and stopped before the next
//! block starts.

use super::{BlockStart, Delta, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Reasoning,
    Tool(u32),
}

/// Numbers blocks and opens and closes them as deltas of another kind arrive.
#[derive(Debug, Default)]
pub struct Sequencer {
    open: Option<(u32, Open)>,
    next: u32,
    /// Upstream tool call index → block index.
    tools: Vec<(u32, u32)>,
}

impl Sequencer {
    fn switch(&mut self, kind: Open, start: BlockStart, out: &mut Vec<Event>) -> u32 {
        if let Some((index, open)) = self.open
            && open == kind
        {
            return index;
        }
        self.close(out);
        let index = self.next;
        self.next += 1;
        self.open = Some((index, kind));
        out.push(Event::BlockStart { index, start });
        index
    }

    /// More answer text.
    pub fn text(&mut self, text: String, out: &mut Vec<Event>) {
        let index = self.switch(Open::Text, BlockStart::Text, out);
        out.push(Event::Delta {
            index,
            delta: Delta::Text(text),
        });
    }

    /// More reasoning text.
    pub fn reasoning(&mut self, text: String, out: &mut Vec<Event>) {
        let index = self.switch(Open::Reasoning, BlockStart::Reasoning, out);
        out.push(Event::Delta {
            index,
            delta: Delta::Reasoning(text),
        });
    }

    /// A tool call begins (`upstream` is the upstream's index of the call).
    pub fn tool_start(&mut self, upstream: u32, id: String, name: String, out: &mut Vec<Event>) {
        self.close(out);
        let index = self.next;
        self.next += 1;
        self.open = Some((index, Open::Tool(upstream)));
        self.tools.push((upstream, index));
        out.push(Event::BlockStart {
            index,
            start: BlockStart::ToolUse { id, name },
        });
    }

    /// More input JSON text of the upstream's tool call `upstream` (ignored when that call
    /// never started).
    pub fn tool_input(&mut self, upstream: u32, json: String, out: &mut Vec<Event>) {
        let Some(&(_, index)) = self.tools.iter().find(|(u, _)| *u == upstream) else {
            return;
        };
        // Arguments of an earlier call may arrive after another block began: still that
        // call's.
        out.push(Event::Delta {
            index,
            delta: Delta::ToolInput(json),
        });
    }

    /// Stops the open block, if any.
    pub fn close(&mut self, out: &mut Vec<Event>) {
        if let Some((index, _)) = self.open.take() {
            out.push(Event::BlockStop { index });
        }
    }

    /// True when a tool call was started.
    pub fn saw_tools(&self) -> bool {
        !self.tools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_open_and_close_in_order() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        s.reasoning("hm".into(), &mut out);
        s.text("a".into(), &mut out);
        s.text("b".into(), &mut out);
        s.tool_start(0, "c1".into(), "f".into(), &mut out);
        s.tool_input(0, "{}".into(), &mut out);
        s.tool_input(7, "{}".into(), &mut out);
        s.close(&mut out);
        let kinds: Vec<String> = out
            .iter()
            .map(|e| match e {
                Event::BlockStart { index, .. } => format!("start{index}"),
                Event::Delta { index, .. } => format!("delta{index}"),
                Event::BlockStop { index } => format!("stop{index}"),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "start0", "delta0", "stop0", "start1", "delta1", "delta1", "stop1", "start2",
                "delta2", "stop2"
            ]
        );
        assert!(s.saw_tools());
    }
}
