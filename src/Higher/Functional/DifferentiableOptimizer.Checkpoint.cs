using Higher.Optim;

namespace Higher.Functional;

/// <summary>The hooks a checkpointed unroll uses to save and restore the state at segment boundaries.</summary>
public partial class DifferentiableOptimizer
{
    /// <summary>Number of parameters (fast weights) the optimizer was built for.</summary>
    internal int ParameterCount => _state.Length;

    /// <summary>The per-parameter state now, as copies sharing the tensors (update rules replace tensors, never mutate them).</summary>
    internal ParamState?[] CaptureState()
    {
        var copy = new ParamState?[_state.Length];
        for (int i = 0; i < copy.Length; i++)
        {
            copy[i] = _state[i]?.ShallowCopy();
        }
        return copy;
    }

    /// <summary>Makes <paramref name="states"/> (copied) the state again.</summary>
    internal void RestoreState(ParamState?[] states)
    {
        for (int i = 0; i < _state.Length; i++)
        {
            _state[i] = states[i]?.ShallowCopy();
        }
    }

    /// <summary>Replaces the overrides in force by <paramref name="overrides"/>.</summary>
    internal void ResetOverride(Override overrides)
    {
        _override.Clear();
        _override.Merge(overrides);
    }
}
