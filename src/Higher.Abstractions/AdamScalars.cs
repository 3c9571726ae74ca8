namespace Higher;

/// <summary>The numbers of one parameter's Adam step (<see cref="IBackend.AdamUpdate"/>).</summary>
/// <param name="Lr">Learning rate.</param>
/// <param name="Beta1">Decay of the first moment.</param>
/// <param name="Beta2">Decay of the second moment.</param>
/// <param name="Eps">Term added to the denominator.</param>
/// <param name="WeightDecay">L2 penalty, or decoupled decay when <paramref name="Decoupled"/> (0: none).</param>
/// <param name="Decoupled">AdamW: the parameter is scaled by 1 − lr·wd first, the gradient left alone.</param>
/// <param name="Amsgrad">Use the maximum of past second moments.</param>
/// <param name="Maximize">Ascend: the gradient's sign is flipped first.</param>
/// <param name="Step">The step number t (1 for the first), for the bias corrections.</param>
public readonly record struct AdamScalars(
    double Lr, double Beta1, double Beta2, double Eps, double WeightDecay, bool Decoupled, bool Amsgrad, bool Maximize, long Step);
