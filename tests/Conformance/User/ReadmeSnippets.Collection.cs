using Higher.Conformance.Checkpoint;

namespace Higher.Conformance.User;

/// <summary>
/// The README's snippets run in the serial collection of the checkpoint tests: the checkpointed unroll's snippet rewinds
/// the generators its steps drew from, which a concurrent draw by another test would disturb.
/// </summary>
[Collection(nameof(CheckpointedDefaultGeneratorTests))]
public sealed partial class ReadmeSnippets;
